"""Energy per request of each ladder model, from real receipts, beside published figures.

Starts ``smallfirst serve`` (its own process, a scratch data directory), sends each ladder
model the same set of chat prompts (greedy, ``--max-tokens``), and reads the ``smallfirst``
receipt of every response. Per model: joules per output token (total energy / total output
tokens), joules per request (mean), Wh per 1,000 requests, the energy method, and the time per
request. Published per-query figures for large hosted models are printed beside them *for
context only*: they are different scopes (whole data-centre serving, with accelerators,
networking and PUE, for much larger models and longer answers) and not comparable one to one.

    .venv/bin/python bench/energy_table.py [--quick]
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from harness import script
from harness.gateway import LADDER_DEFAULT, load_model, model_path, running_gateway
from harness.procs import scratch_dir
from harness.stats import fmt

PROMPTS = (
    "What is the capital of Australia? Answer in one sentence.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "Explain in a short paragraph why the sky is blue.",
    "A train travels 120 km in 1.5 hours. What is its average speed? Show your steps.",
    "Write a haiku about autumn.",
    "List three differences between TCP and UDP.",
)

PUBLISHED = (
    (
        "GPT-4o, typical ChatGPT query (Epoch AI, Feb 2025 estimate)",
        0.3,
        "data-centre estimate: H100 serving of a ~500-token answer, incl. overheads",
    ),
    (
        "Gemini Apps, median text prompt (Google, Aug 2025)",
        0.24,
        "measured fleet-wide: accelerators, host CPU/RAM, idle capacity, data-centre PUE",
    ),
)


def measure(client: httpx.Client, model: str, rounds: int, max_tokens: int) -> dict[str, Any]:
    """Every prompt ``rounds`` times to ``model``; the energy figures of its receipts."""
    load_model(client, model)  # outside the measurement
    receipts = []
    for _ in range(rounds):
        for prompt in PROMPTS:
            r = client.post(
                "/v1/chat/completions",
                json={
                    "model": model,
                    "temperature": 0,
                    "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": prompt}],
                },
            )
            r.raise_for_status()
            receipts.append(r.json()["smallfirst"])
    energy = [x["energy"]["energy_j"] for x in receipts]
    out_tokens = sum(x["tokens"]["completion"] for x in receipts)
    return {
        "requests": len(receipts),
        "prompt_tokens": sum(x["tokens"]["prompt"] for x in receipts),
        "completion_tokens": out_tokens,
        "energy_j_total": sum(energy),
        "j_per_output_token": sum(energy) / out_tokens,
        "j_per_request": statistics.mean(energy),
        "wh_per_1000_requests": statistics.mean(energy) * 1000 / 3600,
        "method": sorted({x["energy"]["method"] for x in receipts}),
        "seconds_per_request": statistics.mean(x["duration_s"] for x in receipts),
        "co2_g_per_request": statistics.mean(x["carbon"]["co2_g"] for x in receipts),
        "source": receipts[0]["energy"]["source"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = script.parser(__doc__, area="metering", quick="the smallest model, one round")
    p.add_argument("--models", nargs="+", default=list(LADDER_DEFAULT), help="catalog names")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--rounds", type=int, help="passes over the prompts (default 2; quick 1)")
    p.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    args = p.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 2)
    models = args.models[:1] if args.quick else args.models
    run = script.start("energy_table", "energy per request of the ladder, from receipts", args)
    per_model: dict[str, dict[str, Any]] = {}
    with scratch_dir() as tmp:
        settings = {"data_dir": str(tmp / "data"), "models_dir": str(model_path(models[0]).parent)}
        with (
            running_gateway(
                tmp, default_model=models[0], settings=settings, threads=args.threads
            ) as gateway,
            httpx.Client(base_url=gateway.url, timeout=600) as client,
        ):
            for model in models:
                m = per_model[model] = measure(client, model, rounds, args.max_tokens)
                print(
                    f"  {model}: {m['j_per_request']:.1f} J/request, "
                    f"{m['j_per_output_token']:.3f} J/output token ({m['method']})",
                    flush=True,
                )
    headers = [
        "model / figure",
        "J per output token",
        "J per request",
        "Wh per request",
        "Wh per 1,000 requests",
        "method and scope",
    ]
    rows = [
        [
            name,
            fmt(m["j_per_output_token"], 3),
            fmt(m["j_per_request"], 1),
            fmt(m["j_per_request"] / 3600, 5),
            fmt(m["wh_per_1000_requests"], 2),
            f"{'/'.join(m['method'])}: this process's CPU time + RAM share, 2-vCPU VM",
        ]
        for name, m in per_model.items()
    ]
    rows += [
        [
            name,
            "",
            fmt(wh * 3600, 0),
            fmt(wh, 2),
            fmt(wh * 1000, 0),
            f"published, for context only: {scope}",
        ]
        for name, wh, scope in PUBLISHED
    ]
    notes = [
        f"{len(PROMPTS)} prompts × {rounds} round(s) per model, greedy, max {args.max_tokens} "
        "output tokens; figures from each response's receipt",
        "the published rows are different scopes (data-centre serving of far larger models, "
        "accelerators, PUE) and different answer lengths: context, not a like-for-like comparison",
    ]
    result = {
        "parameters": {k: v for k, v in vars(args).items() if k != "out"}
        | {"rounds": rounds, "models": models},
        "models": per_model,
        "published": [{"name": n, "wh_per_query": wh, "scope": s} for n, wh, s in PUBLISHED],
    }
    run.finish(
        result, headers=headers, rows=rows, notes=notes, title="Energy per request of the ladder"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
