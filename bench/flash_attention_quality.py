"""Does flash attention change what the models get right? The same eval items, off and on.

Flash attention reorders the float sums inside attention, so greedy answers can change; the
question before it may become the default is whether the models' accuracy does. This script
runs ``smallfirst eval run`` twice on the same subset (``--models``, ``--benchmarks``,
``--limit`` items per benchmark, ``--seed``), once with ``SMALLFIRST_FLASH_ATTENTION=false``
and once with ``true``, each as its own run (resumable: an interrupted script started again
with the same ``--tag`` skips finished items), exports both and compares them item by item.

Figures per model and benchmark: accuracy off and on, the items whose output text is the
same, and the items whose score flipped each way (right only off, right only on). The same
subset of the committed baseline (``bench/results/evals/baseline.jsonl.gz``, made with flash
attention off by older code) is shown beside them where it has the items: how far the answers
already moved without flash attention.

    .venv/bin/python bench/flash_attention_quality.py [--quick] [--limit 40]
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import script
from harness.procs import scratch_dir
from harness.stats import fmt

ROOT = Path(__file__).resolve().parent.parent
SMALLFIRST = str(ROOT / ".venv" / "bin" / "smallfirst")
BASELINE = ROOT / "bench" / "results" / "evals" / "baseline.jsonl.gz"
SIDES = ("off", "on")

Key = tuple[str, str, str]  # model, benchmark, item


def items(path: Path) -> dict[Key, dict[str, Any]]:
    with gzip.open(path, "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {(r["model"], r["benchmark"], r["item_id"]): r for r in rows}


def evaluate(side: str, run_id: str, args: Any, out: Path) -> dict[Key, dict[str, Any]]:
    """One eval run with flash attention ``side``; its exported items."""
    env = {**os.environ, "SMALLFIRST_FLASH_ATTENTION": "true" if side == "on" else "false"}
    cmd = [
        SMALLFIRST, "eval", "run", "--run", run_id, "--seed", str(args.seed),
        "--models", ",".join(args.models), "--benchmarks", ",".join(args.benchmarks),
        "--limit", str(args.limit), "--concurrency", str(args.concurrency),
    ]  # fmt: skip
    began = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    print(f"  flash attention {side}: {time.perf_counter() - began:.0f} s", flush=True)
    path = out / f"{run_id}.jsonl.gz"
    subprocess.run([SMALLFIRST, "eval", "export", "--run", run_id, "--out", str(path)], check=True)
    return items(path)


def compare(
    runs: dict[str, dict[Key, dict[str, Any]]], baseline: dict[Key, dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    groups = sorted({(m, b) for m, b, _ in runs["off"]})
    for model, bench in groups:
        keys = [k for k in runs["off"] if k[:2] == (model, bench) and k in runs["on"]]
        off = [runs["off"][k] for k in keys]
        on = [runs["on"][k] for k in keys]
        base = [baseline[k] for k in keys if k in baseline]
        based = [runs["off"][k] for k in keys if k in baseline]
        rows.append(
            {
                "model": model,
                "benchmark": bench,
                "n": len(keys),
                "accuracy_off": sum(r["correct"] for r in off) / len(keys),
                "accuracy_on": sum(r["correct"] for r in on) / len(keys),
                "same_output": sum(
                    a["output"] == b["output"] for a, b in zip(off, on, strict=True)
                ),
                "right_only_off": sum(
                    a["correct"] and not b["correct"] for a, b in zip(off, on, strict=True)
                ),
                "right_only_on": sum(
                    b["correct"] and not a["correct"] for a, b in zip(off, on, strict=True)
                ),
                "baseline_n": len(base),
                "baseline_same_as_off": sum(
                    a["output"] == b["output"] for a, b in zip(based, base, strict=True)
                ),
            }
        )
    return rows


def main() -> int:
    p = script.parser(__doc__, area="serving", quick="Qwen-0.5B, ARC, 10 items")
    p.add_argument("--models", nargs="+", help="catalog names (default: Qwen-Coder 0.5B, 1.5B)")
    p.add_argument("--benchmarks", nargs="+", help="default: arc-challenge gsm8k")
    p.add_argument("--limit", type=int, help="items per benchmark (default 40; quick 10)")
    p.add_argument("--seed", type=int, default=0, help="the subset's seed (the baseline's: 0)")
    p.add_argument("--concurrency", type=int, default=4, help="items in flight")
    p.add_argument("--tag", help="run ids fa-<tag>-off/on (default: this minute)")
    args = p.parse_args()
    quick = args.quick
    default_models = ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]
    args.models = args.models or (default_models[:1] if quick else default_models)
    args.benchmarks = args.benchmarks or (
        ["arc-challenge"] if quick else ["arc-challenge", "gsm8k"]
    )
    args.limit = args.limit or (10 if quick else 40)
    args.tag = args.tag or time.strftime("%Y%m%d-%H%M")
    run = script.start("flash_attention_quality", "eval answers, flash attention off vs on", args)
    with scratch_dir() as out:
        runs = {side: evaluate(side, f"fa-{args.tag}-{side}", args, out) for side in SIDES}
    rows = compare(runs, items(BASELINE) if BASELINE.exists() else {})
    headers = [
        "model", "benchmark", "items", "accuracy off", "accuracy on", "same output",
        "right only off", "right only on", "baseline: same output as off",
    ]  # fmt: skip
    table = [
        [
            r["model"],
            r["benchmark"],
            str(r["n"]),
            fmt(100 * r["accuracy_off"], 1),
            fmt(100 * r["accuracy_on"], 1),
            f"{r['same_output']} / {r['n']}",
            str(r["right_only_off"]),
            str(r["right_only_on"]),
            f"{r['baseline_same_as_off']} / {r['baseline_n']}" if r["baseline_n"] else "-",
        ]
        for r in rows
    ]
    notes = [
        f"smallfirst eval run, seed {args.seed}, {args.limit} items per benchmark, greedy, "
        f"concurrency {args.concurrency} (the batched engine), run ids fa-{args.tag}-off/on",
        "baseline: bench/results/evals/baseline.jsonl.gz (flash attention off, older code), "
        "the items it shares with this subset",
    ]
    run.finish({"rows": rows}, headers=headers, rows=table, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
