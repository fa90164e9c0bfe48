"""Evaluation reports: the per-model, per-benchmark summary as a table, Markdown, JSON, and
the quality–energy frontier plot.

The figures themselves come from :mod:`smallfirst.store.eval_summary`; this module only
presents them, and runs nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from smallfirst.store.eval_summary import MACRO, Row, summarize, wilson

__all__ = [
    "HEADERS",
    "Row",
    "as_json",
    "markdown",
    "plot_frontier",
    "summarize",
    "table_cells",
    "wilson",
]


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
        if r.benchmark == MACRO and r.energy_j_per_item is not None
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
