"""Percentiles, latency summaries and the plain-text and Markdown tables the scripts print.

Pure functions on lists of numbers and strings: no I/O, no clock, nothing measured here.
Percentiles interpolate linearly between ranks (numpy's default), so figures match what
``numpy.percentile`` would say; an empty sample gives NaN rather than an error.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = [
    "fmt",
    "markdown_table",
    "median",
    "percentile",
    "ratio",
    "summarize",
    "text_table",
]


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100), linear interpolation between ranks."""
    if not values:
        return math.nan
    data = sorted(values)
    rank = (len(data) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def ratio(a: float, b: float) -> float:
    """``a / b``, NaN when ``b`` is zero."""
    return a / b if b else math.nan


def summarize(
    values: Sequence[float],
    *,
    unit: str,
    quantiles: Sequence[float] = (50, 99),
    digits: int | None = None,
) -> dict[str, float]:
    """``n``, the ``quantiles`` and mean, min, max of ``values``, keyed ``p50_<unit>`` etc.

    ``values`` are already in ``unit``; ``digits`` rounds every figure but ``n``.
    """

    def r(x: float) -> float:
        return x if digits is None else round(x, digits)

    out: dict[str, float] = {"n": len(values)}
    for q in quantiles:
        out[f"p{q:g}_{unit}"] = r(percentile(values, q))
    if values:
        out |= {
            f"mean_{unit}": r(statistics.fmean(values)),
            f"min_{unit}": r(min(values)),
            f"max_{unit}": r(max(values)),
        }
    return out


def fmt(x: float | None, digits: int = 2) -> str:
    """``x`` with thousands separators and ``digits`` decimals; ``-`` for None or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell: the first left-aligned, the others right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table, the first column left-aligned, the others right."""
    out = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|",
    ]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    return "\n".join(out)
