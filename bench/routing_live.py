"""Savings shown, not claimed: ``auto`` against the reference model through the real gateway.

``router eval`` scores the router on stored results; this runs it live. The gateway starts
with a fresh data directory, so ``auto`` is served by the router shipped in the package (or
``--router FILE``). The prompts are that router's *held-out* items (never trained on), a
seeded sample of ``--per-benchmark`` from each benchmark. Each item is sent twice, one right
after the other so both see the same machine load: once as ``model: "auto"`` (or
``--policy``) and once to the reference model (the router's most expensive candidate),
greedy, with the item's own token budget. The order alternates from item to item: when
both land on the same model, the second reuses the first's prompt cache and costs less.
Every candidate is loaded by a warm-up request before the measurement. Both answers are
scored by the evaluation harness's scorers; the energy of each comes from its receipt.

Reported, overall and per benchmark: accuracy of each, accuracy kept (auto / reference),
energy of auto as a share of the reference's, and which models ``auto`` chose.

    .venv/bin/python bench/routing_live.py [--per-benchmark 20] [--policy auto] [--quick]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from harness import script
from harness.gateway import load_model, model_path, running_gateway
from harness.procs import scratch_dir


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = script.parser(__doc__, area="routing", quick="3 items per benchmark")
    p.add_argument("--per-benchmark", type=int, default=20, help="held-out items per benchmark")
    p.add_argument("--policy", default="auto", help="the routed model name to test")
    p.add_argument("--router", type=Path, help="router file (default: the packaged one)")
    p.add_argument("--seed", type=int, default=0, help="the sample's seed")
    p.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    return p.parse_args(argv)


def ask(client: httpx.Client, item: Any, model: str, score: Callable[..., Any]) -> dict[str, Any]:
    """One greedy answer to ``item`` from ``model``: who answered, right or not, energy."""
    r = client.post(
        "/v1/chat/completions",
        json={
            "model": model,
            "temperature": 0,
            "max_tokens": item.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in item.messages],
        },
    )
    r.raise_for_status()
    body = r.json()
    receipt = body["smallfirst"]
    return {
        "model": receipt["model"],
        "correct": score(item, body["choices"][0]["message"]["content"]).correct,
        "energy_j": receipt["energy"]["energy_j"],
        "method": receipt["energy"]["method"],
    }


def summary(part: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy of each side, accuracy kept, energy share, and what auto chose."""
    auto_acc = sum(r["auto"]["correct"] for r in part) / len(part)
    ref_acc = sum(r["reference"]["correct"] for r in part) / len(part)
    auto_j = sum(r["auto"]["energy_j"] for r in part)
    ref_j = sum(r["reference"]["energy_j"] for r in part)
    chosen: dict[str, int] = defaultdict(int)
    for r in part:
        chosen[r["auto"]["model"]] += 1
    return {
        "n": len(part),
        "auto_accuracy": auto_acc,
        "reference_accuracy": ref_acc,
        "accuracy_kept": auto_acc / ref_acc if ref_acc else None,
        "auto_energy_j": auto_j,
        "reference_energy_j": ref_j,
        "energy_share": auto_j / ref_j if ref_j else None,
        "chosen": dict(chosen),
    }


def table(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[list[str]]]:
    """Summaries overall and per benchmark, and their table rows."""
    groups = {"all": rows}
    for b in sorted({r["benchmark"] for r in rows}):
        groups[b] = [r for r in rows if r["benchmark"] == b]
    summaries = {name: summary(part) for name, part in groups.items()}
    out = [
        [
            name,
            str(s["n"]),
            f"{100 * s['auto_accuracy']:.1f}%",
            f"{100 * s['reference_accuracy']:.1f}%",
            "-" if s["accuracy_kept"] is None else f"{100 * s['accuracy_kept']:.1f}%",
            "-" if s["energy_share"] is None else f"{100 * s['energy_share']:.1f}%",
            ", ".join(f"{m} {k}" for m, k in sorted(s["chosen"].items())),
        ]
        for name, s in summaries.items()
    ]
    return summaries, out


def main(argv: Sequence[str] | None = None) -> int:
    from smallfirst.evals.benchmarks import load
    from smallfirst.evals.scorers import score
    from smallfirst.routing import artifact as ra
    from smallfirst.settings import Settings

    args = parse_args(argv)
    per = 3 if args.quick else args.per_benchmark
    router = ra.load(args.router) if args.router else ra.load_default()
    if router is None:
        raise SystemExit("bench: no packaged router; run bench/fit_default_router.sh")
    reference = router.reference
    run = script.start(
        "routing_live", f"routing live: {args.policy} vs {reference} on held-out items", args
    )

    settings = Settings()
    wanted: dict[str, set[str]] = defaultdict(set)
    for benchmark, item_id in router.heldout_keys:
        wanted[benchmark].add(item_id)
    rng = random.Random(args.seed)
    items = []
    for benchmark in sorted(wanted):
        pool = [i for i in load(benchmark, settings) if i.item_id in wanted[benchmark]]
        items += rng.sample(pool, min(per, len(pool)))
    rng.shuffle(items)
    print(f"   {len(items)} held-out items from {', '.join(sorted(wanted))}", flush=True)

    rows: list[dict[str, Any]] = []
    with scratch_dir() as tmp:
        data = tmp / "data"
        if args.router:
            (data / "routers").mkdir(parents=True)
            shutil.copy(args.router, data / "routers" / ra.LATEST)
        config = {"data_dir": str(data), "models_dir": str(model_path(reference).parent)}
        with (
            running_gateway(
                tmp, default_model=reference, settings=config, threads=args.threads
            ) as gateway,
            httpx.Client(base_url=gateway.url, timeout=900) as client,
        ):
            for candidate in router.candidates:  # load outside the measurement
                load_model(client, candidate.name)
            for n, item in enumerate(items, 1):
                row: dict[str, Any] = {"benchmark": item.benchmark, "item_id": item.item_id}
                order = [("auto", args.policy), ("reference", reference)]
                for label, model in order if n % 2 else order[::-1]:
                    row[label] = ask(client, item, model, score)
                rows.append(row)
                print(
                    f"  {n}/{len(items)} {item.item_id}: auto -> {row['auto']['model']} "
                    f"({'right' if row['auto']['correct'] else 'wrong'}), reference "
                    f"{'right' if row['reference']['correct'] else 'wrong'}",
                    flush=True,
                )

    summaries, table_rows = table(rows)
    methods = sorted({r[x]["method"] for r in rows for x in ("auto", "reference")})
    result = {
        "policy": args.policy,
        "reference": reference,
        "router_created_at": router.created_at,
        "summaries": summaries,
        "items": rows,
    }
    run.finish(
        result,
        headers=["items", "n", "auto acc", "ref acc", "kept", "auto energy / ref", "auto chose"],
        rows=table_rows,
        notes=[
            f"energy from the receipts, method {'/'.join(methods)}; both answers of an item "
            "were generated back to back, so they shared the machine's load",
            "held-out items of the router (never trained on), sampled with seed "
            f"{args.seed}; scored by the evaluation harness's scorers",
        ],
        title=f"Routing live: {args.policy} vs {reference} on held-out items",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
