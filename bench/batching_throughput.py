"""The batched engine against the one-at-a-time engine, in process: throughput and per-token time.

For each model, both in-process engines are loaded side by side (same GGUF, n_ctx 2048,
``--threads``), and for each round and each client count (``--clients``, default 1 2 4) each
engine in turn (the order alternates by round) serves that many concurrent greedy chat
requests of ``--max-tokens`` tokens, each with a prompt of its own (a round number and a
client number lead it, so no prompt is found in either engine's cache). Figures per engine
and client count, medians over the rounds:

* aggregate tok/s: completion tokens of all clients / wall time from the first request to
  the last answer (prompt evaluation included);
* CPU ms per output token: the process's CPU time over the same span / completion tokens
  (what the ``estimated`` energy method charges, so an energy-per-token proxy);
* where a token's time goes: milliseconds per step in ``llama_decode``, in
  ``llama_sampler_sample`` (the sampler chain) and in everything else (Python: the token
  loop, detokenizing, stop sequences, handing the chunk to the event loop).

Both engines run with the OpenMP wait the engines set for the process (a short spin,
``GOMP_SPINCOUNT=1000``, unless the environment sets a policy): see engines/openmp.py.

Targets from issue #14: batched one stream >= the old engine's (per-stream speed must not
drop); batched CPU per token at 4 clients <= 0.8 x its own at 1 client.

    .venv/bin/python bench/batching_throughput.py [--quick] [--models NAME...] [--clients 1 2 4]
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from harness import script
from harness.gateway import model_path
from harness.stats import fmt, median, ratio
from smallfirst.catalog import Catalog
from smallfirst.engines.base import GenerationRequest, Sampling
from smallfirst.engines.batched import BatchedEngine
from smallfirst.engines.llama import LlamaEngine
from smallfirst.engines.openmp import tame_openmp
from smallfirst.settings import Settings
from smallfirst.types import Message

TIMED = ("llama_decode", "llama_sampler_sample")


class Hooks:
    """Time spent in llama.cpp's decode and sampling, wherever llama-cpp-python calls them."""

    def __init__(self) -> None:
        import llama_cpp
        import llama_cpp.llama_cpp as low

        self.spent: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        for name in TIMED:
            original = getattr(low, name)
            wrapped = self._wrap(name, original)
            for module in (llama_cpp, low):
                setattr(module, name, wrapped)

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.spent[name] += time.perf_counter() - began
                self.calls[name] += 1

        return timed

    def reset(self) -> None:
        self.spent.clear()
        self.calls.clear()


def request(round_no: int, client: int, max_tokens: int) -> GenerationRequest:
    text = f"Round {round_no}, reader {client}: write a long story about a lighthouse keeper."
    return GenerationRequest(
        Sampling(temperature=0.0, max_tokens=max_tokens), (Message("user", text),)
    )


async def serve(engine: LlamaEngine, reqs: list[GenerationRequest]) -> int:
    async def one(req: GenerationRequest) -> int:
        usage = None
        async for chunk in engine.generate(req):
            usage = chunk.usage or usage
        return usage.completion_tokens if usage else 0

    return sum(await asyncio.gather(*(one(r) for r in reqs)))


def measure(
    engine: LlamaEngine, hooks: Hooks, reqs: list[GenerationRequest], steps: Callable[[], int]
) -> dict[str, float]:
    hooks.reset()
    steps_before = steps()
    cpu, wall = time.process_time(), time.perf_counter()
    tokens = asyncio.run(serve(engine, reqs))
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    n_steps = steps() - steps_before or hooks.calls["llama_decode"]
    decode_s, sample_s = hooks.spent["llama_decode"], hooks.spent["llama_sampler_sample"]
    return {
        "tokens": tokens,
        "wall_s": wall,
        "tok_s": ratio(tokens, wall),
        "cpu_ms_per_token": ratio(cpu * 1000, tokens),
        "steps": n_steps,
        "decode_ms_per_step": ratio(decode_s * 1000, n_steps),
        "sample_ms_per_token": ratio(sample_s * 1000, hooks.calls["llama_sampler_sample"]),
        "other_ms_per_step": ratio((wall - decode_s - sample_s) * 1000, n_steps),
    }


def bench_model(args: Any, name: str, hooks: Hooks) -> dict[str, Any]:
    model_path(name)  # exits with a hint when it is not pulled
    settings = Settings(n_ctx=2048, n_threads=args.threads, parallel=max(args.clients))
    spec = Catalog(settings).get(name)
    path = Catalog(settings).file_path(spec)
    assert path is not None
    old, new = LlamaEngine(spec, path, settings), BatchedEngine(spec, path, settings)
    old.load()
    new.load()
    engines: dict[str, tuple[LlamaEngine, Callable[[], int]]] = {
        "one-at-a-time": (old, lambda: 0),
        "batched": (new, lambda: new.scheduler.steps if new.scheduler else 0),
    }
    for engine, steps in engines.values():  # warm-up
        measure(engine, hooks, [request(-1, 0, 8)], steps)
    runs: list[dict[str, Any]] = []
    for round_no in range(args.rounds):
        order = list(engines) if round_no % 2 == 0 else list(reversed(engines))
        for clients in args.clients:
            for label in order:
                engine, steps = engines[label]
                reqs = [request(round_no, c, args.max_tokens) for c in range(clients)]
                figures = measure(engine, hooks, reqs, steps)
                runs.append({"engine": label, "clients": clients, "round": round_no, **figures})
                print(
                    f"  {name} round {round_no} {label:>13} x{clients}: "
                    f"{figures['tok_s']:.1f} tok/s, {figures['cpu_ms_per_token']:.1f} CPU ms/token",
                    flush=True,
                )
    old.unload()
    new.unload()
    return {"model": name, "runs": runs}


def summary(results: list[dict[str, Any]], clients: list[int]) -> list[dict[str, Any]]:
    rows = []
    for res in results:
        for n in clients:
            row: dict[str, Any] = {"model": res["model"], "clients": n}
            for label in ("one-at-a-time", "batched"):
                mine = [r for r in res["runs"] if r["engine"] == label and r["clients"] == n]
                for key in (
                    "tok_s",
                    "cpu_ms_per_token",
                    "decode_ms_per_step",
                    "sample_ms_per_token",
                    "other_ms_per_step",
                ):
                    row[f"{label}:{key}"] = median([r[key] for r in mine])
            row["batched/old tok/s"] = ratio(row["batched:tok_s"], row["one-at-a-time:tok_s"])
            rows.append(row)
    return rows


def main() -> int:
    tame_openmp()  # the engines' OpenMP wait (engines/openmp.py), before llama_cpp loads
    p = script.parser(__doc__, area="serving", quick="the smallest model, 2 rounds, 32 tokens")
    p.add_argument("--models", nargs="+", help="catalog model names (default: SmolLM2, Qwen-0.5B)")
    p.add_argument("--clients", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, both engines")
    p.add_argument("--rounds", type=int, help="rounds (default 3; quick 2)")
    p.add_argument("--max-tokens", type=int, help="tokens per answer (default 96; quick 32)")
    args = p.parse_args()
    quick = args.quick
    args.models = args.models or (
        ["smollm2-135m-instruct"]
        if quick
        else ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]
    )
    args.rounds = args.rounds or (2 if quick else 3)
    args.max_tokens = args.max_tokens or (32 if quick else 96)
    run = script.start("batching_throughput", "batched vs one-at-a-time engine, in process", args)
    hooks = Hooks()
    results = [bench_model(args, name, hooks) for name in args.models]
    rows = summary(results, args.clients)
    headers = [
        "model",
        "clients",
        "old tok/s",
        "batched tok/s",
        "batched/old",
        "old CPU ms/tok",
        "batched CPU ms/tok",
        "old decode / sample / other ms",
        "batched decode ms/step / sample ms/tok / other ms/step",
    ]
    table = [
        [
            r["model"],
            str(r["clients"]),
            fmt(r["one-at-a-time:tok_s"], 1),
            fmt(r["batched:tok_s"], 1),
            fmt(r["batched/old tok/s"]),
            fmt(r["one-at-a-time:cpu_ms_per_token"], 1),
            fmt(r["batched:cpu_ms_per_token"], 1),
            " / ".join(
                fmt(r[f"one-at-a-time:{k}"], 2)
                for k in ("decode_ms_per_step", "sample_ms_per_token", "other_ms_per_step")
            ),
            " / ".join(
                fmt(r[f"batched:{k}"], 2)
                for k in ("decode_ms_per_step", "sample_ms_per_token", "other_ms_per_step")
            ),
        ]
        for r in rows
    ]
    notes = [
        f"{args.rounds} rounds, {args.max_tokens} tokens per answer, greedy, "
        f"{args.threads} threads, medians; the engine order alternates by round",
        "aggregate tok/s includes prompt evaluation; CPU ms per token is the whole process's "
        "CPU time (llama.cpp threads, event loop, this script) per completion token",
        "the old engine's 'steps' are its llama_decode calls (one per token after the prompt)",
    ]
    run.finish(
        {"results": results, "summary": rows},
        headers=headers,
        rows=table,
        notes=notes,
        title="Batched vs one-at-a-time engine (in process)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
