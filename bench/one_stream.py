"""One stream: the batched engine against the one-at-a-time engine, and the suspects, in process.

Issue #14 asks that per-stream speed not drop because of batching; the first batched run
measured one stream at 0.86x the old engine (bench/results/serving/engine-profile.md). This
script loads, side by side in one process (same GGUF, n_ctx 2048 per request, ``--threads``,
the OpenMP wait the engines set, as bench/batching_throughput.py), the one-at-a-time
engine and batched engines that each change one suspect:

* ``batched``: as served until 2026-12-03 (``parallel`` 4 slots, one KV stream per slot,
  flash attention off; it is on by default since);
* ``batched-p1``: one slot (the context and KV of a single request);
* ``batched-unified``: 4 slots in one unified KV buffer (``kv_unified``);
* ``batched-fa``: flash attention left to llama.cpp (``auto``) instead of off.

Each round (``--rounds``) runs one greedy chat request of ``--max-tokens`` tokens on every
engine in turn, the order rotating by round, each with a prompt of its own (the round number
leads it). Figures per engine, medians over the rounds: tok/s (wall, prompt included),
milliseconds per step in ``llama_decode``, Python and the rest per step, and each engine's
tok/s over the old engine's *in the same round* (the ratio that contention cancels from).

    .venv/bin/python bench/one_stream.py [--quick] [--model NAME] [--rounds 8]
"""

from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

from batching_throughput import Hooks, measure, request
from harness import script
from harness.gateway import model_path
from harness.stats import fmt, median, ratio
from smallfirst.catalog import Catalog, ModelSpec
from smallfirst.engines.batched import BatchedEngine
from smallfirst.engines.llama import LlamaEngine
from smallfirst.engines.openmp import tame_openmp
from smallfirst.settings import Settings

OLD = "one-at-a-time"


class Variant(BatchedEngine):
    """The batched engine with one context parameter changed."""

    def __init__(
        self, spec: ModelSpec, path: Path, settings: Settings, *, unified: bool, fa: bool
    ) -> None:
        super().__init__(spec, path, settings)
        self.unified, self.fa = unified, fa

    def _context_params(self, llama_cpp: Any) -> Any:
        params = super()._context_params(llama_cpp)
        params.kv_unified = self.unified
        if self.fa:
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
        return params


def engines(name: str, threads: int) -> dict[str, LlamaEngine]:
    base = Settings(n_ctx=2048, n_threads=threads, parallel=4, flash_attention=False)
    spec = Catalog(base).get(name)
    path = Catalog(base).file_path(spec)
    assert path is not None
    one = base.model_copy(update={"parallel": 1})
    made: dict[str, LlamaEngine] = {
        OLD: LlamaEngine(spec, path, base),
        "batched": BatchedEngine(spec, path, base),
        "batched-p1": BatchedEngine(spec, path, one),
        "batched-unified": Variant(spec, path, base, unified=True, fa=False),
        "batched-fa": Variant(spec, path, base, unified=False, fa=True),
    }
    for engine in made.values():
        engine.load()
    return made


def steps_of(engine: LlamaEngine) -> int:
    scheduler = engine.scheduler if isinstance(engine, BatchedEngine) else None
    return scheduler.steps if scheduler else 0


def main() -> int:
    tame_openmp()  # the engines' OpenMP wait (engines/openmp.py), before llama_cpp loads
    p = script.parser(__doc__, area="serving", quick="4 rounds, 32 tokens")
    p.add_argument("--model", default="smollm2-135m-instruct", help="catalog model name")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, every engine")
    p.add_argument("--rounds", type=int, help="rounds (default 8; quick 4)")
    p.add_argument("--max-tokens", type=int, help="tokens per answer (default 64; quick 32)")
    args = p.parse_args()
    args.rounds = args.rounds or (4 if args.quick else 8)
    args.max_tokens = args.max_tokens or (32 if args.quick else 64)
    run = script.start("one_stream", "one stream: batched engine variants vs old", args)
    model_path(args.model)  # exits with a hint when it is not pulled
    hooks = Hooks()
    made = engines(args.model, args.threads)
    labels = list(made)
    for engine in made.values():  # warm-up
        measure(engine, hooks, [request(-1, 0, 8)], partial(steps_of, engine))
    runs: list[dict[str, Any]] = []
    for round_no in range(args.rounds):
        shift = round_no % len(labels)
        for label in labels[shift:] + labels[:shift]:
            engine = made[label]
            reqs = [request(round_no, 0, args.max_tokens)]
            figures = measure(engine, hooks, reqs, partial(steps_of, engine))
            runs.append({"engine": label, "round": round_no, **figures})
            print(f"  round {round_no} {label:>16}: {figures['tok_s']:.1f} tok/s", flush=True)
    for engine in made.values():
        engine.unload()
    rows: list[dict[str, Any]] = []
    for label in labels:
        mine = [r for r in runs if r["engine"] == label]
        per_round = [
            ratio(r["tok_s"], o["tok_s"])
            for r in mine
            for o in runs
            if o["engine"] == OLD and o["round"] == r["round"]
        ]
        rows.append(
            {
                "engine": label,
                "tok_s": median([r["tok_s"] for r in mine]),
                "vs_old": median(per_round),
                "vs_old_min": min(per_round),
                "vs_old_max": max(per_round),
                "decode_ms_per_step": median([r["decode_ms_per_step"] for r in mine]),
                "other_ms_per_step": median([r["other_ms_per_step"] for r in mine]),
                "cpu_ms_per_token": median([r["cpu_ms_per_token"] for r in mine]),
            }
        )
    headers = ["engine", "tok/s", "/ old (median of rounds)", "range", "decode ms/step"]
    headers += ["other ms/step", "CPU ms/token"]
    table = [
        [
            r["engine"],
            fmt(r["tok_s"], 1),
            fmt(r["vs_old"]),
            f"{fmt(r['vs_old_min'])}-{fmt(r['vs_old_max'])}",
            fmt(r["decode_ms_per_step"], 1),
            fmt(r["other_ms_per_step"], 2),
            fmt(r["cpu_ms_per_token"], 1),
        ]
        for r in rows
    ]
    notes = [
        f"{args.model}, {args.rounds} rounds, {args.max_tokens} tokens, greedy, 1 client, "
        f"{args.threads} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')}, "
        f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', '-')}",
        "/ old: each round's tok/s over the one-at-a-time engine's in that round, median",
    ]
    run.finish(
        {"runs": runs, "summary": rows},
        headers=headers,
        rows=table,
        notes=notes,
        title="One stream: batched engine variants vs one-at-a-time (in process)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
