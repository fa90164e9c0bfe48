"""Evaluation reports: accuracy with 95% intervals, energy, cost and tokens per item, and the
quality–energy frontier plot.

Accuracy intervals are Wilson score intervals (sound for small n and for accuracies near 0
or 1, unlike the normal approximation). "All" rows are macro averages over benchmarks
(each benchmark weighs the same, however many items it has) for accuracy, and means over
items for the per-item costs. Energy figures say their method.

This module only summarises stored results; it runs nothing.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from smallfirst.store.eval_results import EvalResult

Z_95 = 1.959963984540054


def wilson(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True, slots=True)
class Row:
    model: str
    benchmark: str
    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    energy_j_per_item: float | None
    energy_method: str
    cost_usd_per_item: float | None
    prompt_tokens_per_item: float
    completion_tokens_per_item: float
    seconds_per_item: float


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def summarize(results: list[EvalResult]) -> list[Row]:
    groups: dict[tuple[str, str], list[EvalResult]] = defaultdict(list)
    for r in results:
        groups[(r.model, r.benchmark)].append(r)
    rows = []
    for (model, benchmark), rs in sorted(groups.items()):
        correct = sum(r.correct for r in rs)
        low, high = wilson(correct, len(rs))
        rows.append(
            Row(
                model=model,
                benchmark=benchmark,
                n=len(rs),
                accuracy=correct / len(rs),
                ci_low=low,
                ci_high=high,
                energy_j_per_item=_mean([r.energy_j for r in rs]),
                energy_method="/".join(sorted({r.energy_method for r in rs})),
                cost_usd_per_item=_mean([r.cost_usd for r in rs]),
                prompt_tokens_per_item=statistics.fmean(r.prompt_tokens or 0 for r in rs),
                completion_tokens_per_item=statistics.fmean(r.completion_tokens or 0 for r in rs),
                seconds_per_item=statistics.fmean(r.duration_s for r in rs),
            )
        )
    by_model: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_model[row.model].append(row)
    for model, mrows in by_model.items():
        items = [r for r in results if r.model == model]
        rows.append(
            Row(
                model=model,
                benchmark="all (macro)",
                n=sum(r.n for r in mrows),
                accuracy=statistics.fmean(r.accuracy for r in mrows),
                ci_low=math.nan,
                ci_high=math.nan,
                energy_j_per_item=_mean([r.energy_j for r in items]),
                energy_method="/".join(sorted({r.energy_method for r in items})),
                cost_usd_per_item=_mean([r.cost_usd for r in items]),
                prompt_tokens_per_item=statistics.fmean(r.prompt_tokens or 0 for r in items),
                completion_tokens_per_item=statistics.fmean(
                    r.completion_tokens or 0 for r in items
                ),
                seconds_per_item=statistics.fmean(r.duration_s for r in items),
            )
        )
    return rows


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}"


def _cells(r: Row) -> list[str]:
    ci = "" if math.isnan(r.ci_low) else f"[{_pct(r.ci_low)}, {_pct(r.ci_high)}]"
    return [
        r.model,
        r.benchmark,
        str(r.n),
        _pct(r.accuracy),
        ci,
        "-" if r.energy_j_per_item is None else f"{r.energy_j_per_item:.1f} ({r.energy_method})",
        "-" if r.cost_usd_per_item is None else f"{r.cost_usd_per_item:.2e}",
        f"{r.prompt_tokens_per_item:.0f} / {r.completion_tokens_per_item:.0f}",
        f"{r.seconds_per_item:.2f}",
    ]


HEADERS = [
    "model",
    "benchmark",
    "n",
    "accuracy %",
    "95% CI",
    "J/item",
    "$/item",
    "tokens in/out",
    "s/item",
]


def markdown(rows: list[Row]) -> str:
    """The table, then how each benchmark was asked and scored and what the energy means."""
    from smallfirst.evals.benchmarks import method

    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    benchmarks = sorted({r.benchmark for r in rows if not r.benchmark.startswith("all")})
    if benchmarks:
        lines += ["", "How each benchmark was asked and scored:", ""]
        lines += [f"- {b}: {method(b)}." for b in benchmarks]
    methods = sorted({m for r in rows for m in r.energy_method.split("/") if m})
    if methods:
        lines += [
            "",
            f"Energy per item is {', '.join(methods)}: `measured` is read from hardware "
            "counters (RAPL package and DRAM, NVML board: whole-device scope), `estimated` "
            "is the process's CPU-seconds times watts per busy thread plus RAM watts, "
            "`profile` a remote model's joules per token (smallfirst.metering.meter). "
            "The joules are the device's; PUE enters CO2 and cost only. Accuracy "
            "intervals are Wilson 95%.",
        ]
    return "\n".join(lines)


def as_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(r).items()}
        for r in rows
    ]


def table_cells(rows: list[Row]) -> list[list[str]]:
    return [_cells(r) for r in rows]


def plot_frontier(rows: list[Row], path: Path, title: str = "Quality vs energy") -> Path:
    """Each model a point: macro accuracy against mean joules per item (log scale)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    points = [
        (r.energy_j_per_item, r)
        for r in rows
        if r.benchmark == "all (macro)" and r.energy_j_per_item is not None
    ]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for energy_j, r in sorted(points, key=lambda p: p[0]):
        ax.scatter(energy_j, 100 * r.accuracy, s=60)
        ax.annotate(
            r.model,
            (energy_j, 100 * r.accuracy),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=8,
        )
    method = "/".join(sorted({r.energy_method for _, r in points})) or "unknown"
    ax.set_xscale("log")
    ax.set_xlabel(f"energy per item, J ({method}; log scale)")
    ax.set_ylabel("accuracy, % (macro average over benchmarks)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
