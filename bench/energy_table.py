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

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import httpx

import _common as c

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--models", nargs="+", default=list(c.LADDER_DEFAULT))
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--rounds", type=int, help="passes over the prompts (default 2; quick 1)")
    p.add_argument("--threads", type=int)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=c.RESULTS_DIR)
    args = p.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 2)
    models = args.models[:1] if args.quick else args.models
    c.install_signal_handlers()
    machine = c.machine_info()
    c.print_header("energy per request of the ladder, from receipts", machine)
    per_model: dict[str, dict[str, Any]] = {}
    with c.scratch_dir() as tmp:
        port = c.free_port()
        config = c.write_gateway_config(
            tmp / "g.toml",
            {"data_dir": str(tmp / "data"), "models_dir": str(c.model_path(models[0]).parent)},
        )
        cmd = c.gateway_command(
            port=port, default_model=models[0], threads=args.threads, config=config
        )
        url = f"http://127.0.0.1:{port}"
        with c.Child("gateway", cmd, log_path=tmp / "gateway.log") as gateway:
            gateway.wait_ready(url + "/health")
            with httpx.Client(base_url=url, timeout=600) as client:
                for model in models:
                    receipts = []
                    # warm-up: load the model outside the measurement
                    client.post(
                        "/v1/chat/completions",
                        json={
                            "model": model,
                            "messages": [{"role": "user", "content": "Hi"}],
                            "max_tokens": 2,
                        },
                    )
                    for _ in range(rounds):
                        for prompt in PROMPTS:
                            r = client.post(
                                "/v1/chat/completions",
                                json={
                                    "model": model,
                                    "temperature": 0,
                                    "max_tokens": args.max_tokens,
                                    "messages": [{"role": "user", "content": prompt}],
                                },
                            )
                            r.raise_for_status()
                            receipts.append(r.json()["smallfirst"])
                    energy = [x["energy"]["energy_j"] for x in receipts]
                    out_tokens = sum(x["tokens"]["completion"] for x in receipts)
                    in_tokens = sum(x["tokens"]["prompt"] for x in receipts)
                    per_model[model] = {
                        "requests": len(receipts),
                        "prompt_tokens": in_tokens,
                        "completion_tokens": out_tokens,
                        "energy_j_total": sum(energy),
                        "j_per_output_token": sum(energy) / out_tokens,
                        "j_per_request": statistics.mean(energy),
                        "wh_per_1000_requests": statistics.mean(energy) * 1000 / 3600,
                        "method": sorted({x["energy"]["method"] for x in receipts}),
                        "seconds_per_request": statistics.mean(x["duration_s"] for x in receipts),
                        "co2_g_per_request": statistics.mean(
                            x["carbon"]["co2_g"] for x in receipts
                        ),
                        "source": receipts[0]["energy"]["source"],
                    }
                    m = per_model[model]
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
            c.fmt(m["j_per_output_token"], 3),
            c.fmt(m["j_per_request"], 1),
            c.fmt(m["j_per_request"] / 3600, 5),
            c.fmt(m["wh_per_1000_requests"], 2),
            f"{'/'.join(m['method'])}: this process's CPU time + RAM share, 2-vCPU VM",
        ]
        for name, m in per_model.items()
    ]
    rows += [
        [
            name,
            "",
            c.fmt(wh * 3600, 0),
            c.fmt(wh, 2),
            c.fmt(wh * 1000, 0),
            f"published, for context only: {scope}",
        ]
        for name, wh, scope in PUBLISHED
    ]
    print()
    print(c.text_table(headers, rows))
    notes = [
        f"{len(PROMPTS)} prompts × {rounds} round(s) per model, greedy, max {args.max_tokens} "
        "output tokens; figures from each response's receipt",
        "the published rows are different scopes (data-centre serving of far larger models, "
        "accelerators, PUE) and different answer lengths: context, not a like-for-like comparison",
    ]
    result = {
        "benchmark": "energy_table",
        "machine": machine,
        "parameters": vars(args) | {"rounds": rounds, "models": models},
        "models": per_model,
        "published": [{"name": n, "wh_per_query": wh, "scope": s} for n, wh, s in PUBLISHED],
    }
    paths = c.write_results(
        "energy_table",
        result,
        title="Energy per request of the ladder",
        headers=headers,
        rows=rows,
        notes=notes,
        quick=args.quick,
        out_dir=args.out,
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
