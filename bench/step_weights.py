"""What a decode token and a prompt token cost inside one batched step: the metering weights.

The batched engine's metering splits each step's CPU time among the sequences in it by the
tokens each put into the batch (``ComputeMeter.split_step``): a decode token and a prompt
token weigh the same. This script measures whether they cost the same.

In process, one llama.cpp context shaped like the batched engine's (``--parallel`` slots of
n_ctx 2048 each, one KV stream per slot, flash attention as the setting's default: off until
2026-12-03, when the committed 3.07 was measured; n_batch 512, ``--threads``):
slots 0..D-1 hold a 64-token prompt each (decode tokens attend over it), and the last slot
is empty. A step is one ``llama_decode`` of a batch holding D decode tokens (one per slot
0..D-1, logits on) and P prompt tokens of the empty slot (logits on the last only); after
each step the new KV cells are removed, so every repeat measures the same step. For every
(D, P) on the grid, ``--repeats`` times in a shuffled order, the process CPU time and the
wall time of the step are taken. A least-squares fit of

    CPU time = a + b_decode * D + b_prompt * P

gives the fixed part of a step and the marginal cost of each kind of token. Reported: the
fit, its residual, b_decode / b_prompt, and, for typical mixed steps, the share of the step a
decode token is charged under equal weights against the share its fitted cost would give.

    .venv/bin/python bench/step_weights.py [--quick] [--model NAME] [--repeats N]
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

import numpy as np

from harness import script
from harness.gateway import model_path
from harness.stats import fmt, median
from smallfirst.engines.batched import context_params
from smallfirst.engines.openmp import tame_openmp
from smallfirst.settings import Settings

PROMPT_LEN = 64


class Context:
    """A llama.cpp context shaped like the batched engine's, with slots 0..n-2 filled."""

    def __init__(self, path: str, parallel: int, threads: int) -> None:
        import llama_cpp
        from llama_cpp import _internals
        from llama_cpp._logger import set_verbose

        set_verbose(False)
        llama_cpp.llama_backend_init()
        self.lib = llama_cpp
        self.model: Any = _internals.LlamaModel(
            path_model=path, params=llama_cpp.llama_model_default_params(), verbose=False
        )
        # the batched engine's own parameters, so the shape measured is the one served
        settings = Settings(n_ctx=2048, n_batch=512, n_threads=threads, parallel=parallel)
        params = context_params(llama_cpp, 2048, parallel, settings)
        self.ctx: Any = _internals.LlamaContext(model=self.model, params=params, verbose=False)
        self.memory = llama_cpp.llama_get_memory(self.ctx.ctx)
        self.batch = llama_cpp.llama_batch_init(512, 0, 1)
        self.parallel = parallel
        self.tokens = self.model.tokenize(
            ("The lighthouse keeper wrote in his log every evening. " * 40).encode(), False, False
        )
        for slot in range(parallel - 1):
            self.step([(slot, self.tokens[slot : slot + PROMPT_LEN], 0, False)])
        # the decode tokens' input: any token, at position PROMPT_LEN of its slot

    def step(self, parts: list[tuple[int, list[int], int, bool]]) -> None:
        """One llama_decode of ``parts``: (slot, tokens, first position, logits on all)."""
        b, n = self.batch, 0
        for slot, tokens, pos, all_logits in parts:
            for i, token in enumerate(tokens):
                b.token[n], b.pos[n], b.n_seq_id[n] = token, pos + i, 1
                b.seq_id[n][0] = slot
                b.logits[n] = all_logits or i == len(tokens) - 1
                n += 1
        b.n_tokens = n
        if self.lib.llama_decode(self.ctx.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")

    def measure(self, d: int, p: int) -> tuple[float, float]:
        """CPU and wall seconds of one step with ``d`` decode and ``p`` prompt tokens."""
        last = self.parallel - 1
        parts = [(slot, [self.tokens[PROMPT_LEN + slot]], PROMPT_LEN, True) for slot in range(d)]
        if p:
            parts.append((last, self.tokens[:p], 0, False))
        cpu, wall = time.process_time(), time.perf_counter()
        self.step(parts)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        for slot in range(d):
            self.lib.llama_memory_seq_rm(self.memory, slot, PROMPT_LEN, -1)
        self.lib.llama_memory_seq_rm(self.memory, last, -1, -1)
        return cpu, wall

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.ctx.close()
        self.model.close()


def fit(samples: list[dict[str, float]], key: str) -> dict[str, float]:
    x = np.array([[1.0, s["decode"], s["prompt"]] for s in samples])
    y = np.array([s[key] for s in samples])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    return {
        "fixed_ms": float(coef[0]) * 1000,
        "per_decode_token_ms": float(coef[1]) * 1000,
        "per_prompt_token_ms": float(coef[2]) * 1000,
        "rms_residual_ms": float(np.sqrt(np.mean(resid**2))) * 1000,
        "mean_ms": float(np.mean(y)) * 1000,
    }


def main() -> int:
    tame_openmp()  # the engines' OpenMP wait (engines/openmp.py), before llama_cpp loads
    p = script.parser(__doc__, area="metering", quick="3 repeats, a smaller grid")
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="catalog model name")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=8, help="slots (decode tokens up to this - 1)")
    p.add_argument("--repeats", type=int, help="measurements per grid point (default 8)")
    args = p.parse_args()
    args.repeats = args.repeats or (3 if args.quick else 8)
    decodes = [0, 1, 2, 4] if args.quick else [0, 1, 2, 4, args.parallel - 1]
    prompts = [0, 32, 128] if args.quick else [0, 16, 32, 64, 128]
    grid = [(d, q) for d in decodes for q in prompts if d or q]
    run = script.start("step_weights", "decode and prompt tokens in one batched step", args)
    ctx = Context(str(model_path(args.model)), args.parallel, args.threads)
    for d, q in grid:  # warm-up: every batch shape once
        ctx.measure(d, q)
    order = [point for point in grid for _ in range(args.repeats)]
    random.Random(0).shuffle(order)
    samples = []
    for d, q in order:
        cpu, wall = ctx.measure(d, q)
        samples.append({"decode": d, "prompt": q, "cpu_s": cpu, "wall_s": wall})
    ctx.close()
    cpu_fit, wall_fit = fit(samples, "cpu_s"), fit(samples, "wall_s")
    weight = cpu_fit["per_decode_token_ms"] / cpu_fit["per_prompt_token_ms"]
    rows = []
    for d, q in grid:
        mine = [s for s in samples if s["decode"] == d and s["prompt"] == q]
        rows.append(
            [
                str(d),
                str(q),
                fmt(median([s["cpu_s"] for s in mine]) * 1000, 1),
                fmt(median([s["wall_s"] for s in mine]) * 1000, 1),
            ]
        )
    mixed = []
    for d, q in ((1, 128), (3, 128), (3, 32), (7, 16)):
        total = cpu_fit["fixed_ms"] + cpu_fit["per_decode_token_ms"] * d
        total += cpu_fit["per_prompt_token_ms"] * q
        equal = d / (d + q)  # the decode tokens' share under equal weights
        # their share if each token paid its marginal cost and the fixed part went by tokens
        marginal = cpu_fit["per_decode_token_ms"] * d + cpu_fit["fixed_ms"] * d / (d + q)
        mixed.append(
            {"decode": d, "prompt": q, "equal_share": equal, "fitted_share": marginal / total}
        )
    notes = [
        f"{args.model}, {args.parallel} slots, {args.threads} threads, {args.repeats} repeats "
        "per point in a shuffled order, medians in the table",
        "CPU-time fit: fixed {:.1f} ms + {:.2f} ms per decode token + {:.2f} ms per prompt "
        "token (RMS residual {:.1f} ms); decode/prompt = {:.2f}".format(
            cpu_fit["fixed_ms"],
            cpu_fit["per_decode_token_ms"],
            cpu_fit["per_prompt_token_ms"],
            cpu_fit["rms_residual_ms"],
            weight,
        ),
        "wall-time fit: fixed {:.1f} ms + {:.2f} ms per decode token + {:.2f} ms per prompt "
        "token".format(
            wall_fit["fixed_ms"], wall_fit["per_decode_token_ms"], wall_fit["per_prompt_token_ms"]
        ),
        *(
            f"a step of {m['decode']} decode + {m['prompt']} prompt tokens: the decode tokens "
            f"are charged {m['equal_share']:.3f} of it under equal weights, "
            f"{m['fitted_share']:.3f} under the fitted costs"
            for m in mixed
        ),
    ]
    run.finish(
        {"samples": samples, "cpu_fit": cpu_fit, "wall_fit": wall_fit, "mixed": mixed},
        headers=["decode tokens", "prompt tokens", "CPU ms (median)", "wall ms (median)"],
        rows=rows,
        notes=notes,
        echo_notes=True,
        title="Decode and prompt tokens in one batched step",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
