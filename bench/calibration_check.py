"""Does a calibrated quality target hold on items the router has not seen? Over several splits.

``auto:quality=Q`` promises Q x the reference model's accuracy. The threshold is calibrated
on out-of-fold scores of the training split; this script measures what it delivers on the
held-out split, for several seeded splits of the committed baseline, two ways side by side:

- ``per benchmark`` (what smallfirst does): the lowest threshold at which every benchmark of
  the training split keeps Q of the reference's accuracy on that benchmark, and the mix too;
- ``mix``: the lowest threshold at which the training mix as a whole keeps Q (RouteLLM's
  calibration; the sweep's per-benchmark figures are dropped).

For each split, policy and way: held-out accuracy as a share of the reference's, the worst
benchmark's share, and energy as a share of the reference's. The L2 penalties are fixed
(``--l2``, ``--spend-l2``; the packaged router's choice) so that a split costs one fit.

    .venv/bin/python bench/calibration_check.py [--results FILE] [--seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import script
from harness.results import results_dir

DEFAULT_RESULTS = results_dir("evals") / "baseline.jsonl.gz"
TARGETS = (0.9, 0.95)
WAYS = ("per benchmark", "mix")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = script.parser(__doc__, area="routing")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="exported results")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated split seeds")
    p.add_argument("--l2", type=float, default=1.0, help="L2 penalty of the quality models")
    p.add_argument("--spend-l2", type=float, default=100.0, help="L2 penalty of the spend model")
    return p.parse_args(argv)


def load_table(path: Path) -> Any:
    from smallfirst.routing.training.table import build_table, load_prompts
    from smallfirst.settings import load_settings
    from smallfirst.store.eval_results import read_export

    results = list(read_export(path))
    prompts = load_prompts({r.benchmark for r in results}, load_settings())
    return build_table(results, prompts.messages, None, prefixes=prompts.prefixes)


def on_the_mix(artifact: Any) -> Any:
    """The artifact with its sweeps' per-benchmark figures dropped: calibrated on the mix."""
    sweeps = {
        s: dataclasses.replace(curve, worst_benchmark_ratio=None)
        for s, curve in artifact.calibration.items()
    }
    return dataclasses.replace(artifact, calibration=sweeps)


def measure(artifact: Any, heldout: Any) -> dict[str, dict[str, float | None]]:
    """Per policy: held-out quality share, worst benchmark's share, energy share."""
    from smallfirst.routing.training.evaluation import evaluate

    out: dict[str, dict[str, float | None]] = {}
    for point in evaluate(artifact, heldout).calibrated:
        if point.strategy != "predictive" or not point.policy.startswith("auto:quality"):
            continue
        worst = min(
            v["accuracy"] / v["reference_accuracy"]
            for v in point.by_benchmark.values()
            if v["reference_accuracy"] > 0
        )
        out[point.policy] = {
            "quality_ratio": point.quality_ratio,
            "worst_benchmark_ratio": worst,
            "energy_fraction": point.energy_fraction,
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from smallfirst.routing.training.splits import split
    from smallfirst.routing.training.train import train

    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    run = script.start(
        "calibration_check", "Calibration on held-out items, per benchmark against on the mix", args
    )
    table = load_table(args.results)
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        artifact, _ = train(table, seed=seed, l2=args.l2, spend_l2=args.spend_l2)
        parts = split(table, artifact.heldout_fraction, seed)
        heldout = table.take(parts.heldout)
        for way, art in zip(WAYS, (artifact, on_the_mix(artifact)), strict=True):
            for policy, figures in measure(art, heldout).items():
                runs.append({"seed": seed, "way": way, "policy": policy, **figures})
                print(
                    f"seed {seed} {way:13s} {policy:18s} quality {figures['quality_ratio']:.3f}"
                    f" worst benchmark {figures['worst_benchmark_ratio']:.3f}"
                    f" energy {figures['energy_fraction']:.3f}",
                    file=sys.stderr,
                )
    summary, rows = summarize_runs(runs)
    run.finish(
        {
            "seeds": seeds,
            "l2": args.l2,
            "spend_l2": args.spend_l2,
            "results": str(args.results),
            "summary": summary,
            "runs": runs,
        },
        headers=HEADERS,
        rows=rows,
        notes=[
            f"{len(seeds)} seeded splits (75% train / 25% held out, grouped by prompt, "
            f"stratified by benchmark) of `{args.results.name}`; L2 {args.l2:g}, spend L2 "
            f"{args.spend_l2:g}.",
            "per benchmark: every benchmark of the training split keeps the target (what "
            "smallfirst does); mix: the training mix as a whole does (RouteLLM's way).",
            "Energy is the CPU-time estimate (method `estimated`) of the baseline run.",
        ],
        title="Calibrated quality targets on held-out items (predictive router)",
    )
    return 0


HEADERS = (
    "policy",
    "calibrated",
    "target met (mix)",
    "met on every benchmark",
    "quality vs reference (mean)",
    "(min)",
    "worst benchmark (mean)",
    "energy vs reference (mean)",
)


def summarize_runs(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Per policy and way of calibrating, over the splits: the summary and the table rows."""
    rows = []
    summary = []
    for target in (*TARGETS, 1.0):
        policy = f"auto:quality={target:g}"
        for way in WAYS:
            mine = [r for r in runs if r["policy"] == policy and r["way"] == way]
            if not mine:
                continue
            met = sum(r["quality_ratio"] >= target - 1e-9 for r in mine)
            worst_met = sum(r["worst_benchmark_ratio"] >= target - 1e-9 for r in mine)
            entry = {
                "policy": policy,
                "way": way,
                "splits": len(mine),
                "mix_target_met": met,
                "every_benchmark_met": worst_met,
                "quality_ratio_mean": statistics.fmean(r["quality_ratio"] for r in mine),
                "quality_ratio_min": min(r["quality_ratio"] for r in mine),
                "worst_benchmark_ratio_mean": statistics.fmean(
                    r["worst_benchmark_ratio"] for r in mine
                ),
                "energy_fraction_mean": statistics.fmean(r["energy_fraction"] for r in mine),
            }
            summary.append(entry)
            rows.append(
                [
                    policy,
                    way,
                    f"{met}/{len(mine)}",
                    f"{worst_met}/{len(mine)}",
                    f"{100 * entry['quality_ratio_mean']:.1f}%",
                    f"{100 * entry['quality_ratio_min']:.1f}%",
                    f"{100 * entry['worst_benchmark_ratio_mean']:.1f}%",
                    f"{100 * entry['energy_fraction_mean']:.1f}%",
                ]
            )
    return summary, rows


if __name__ == "__main__":
    raise SystemExit(main())
