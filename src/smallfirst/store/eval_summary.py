"""What stored evaluation results say per model and benchmark: accuracy with a 95% interval
and the mean cost of an item.

Accuracy intervals are Wilson score intervals (sound for small n and for accuracies near 0
or 1, unlike the normal approximation). "All" rows are macro averages over benchmarks
(each benchmark weighs the same, however many items it has) for accuracy, and means over
items for the per-item costs. Energy figures say their method.

Pure arithmetic over :class:`~smallfirst.store.eval_results.EvalResult` rows: both the
evaluation report and the dashboard's frontier read it, so it lives beside the rows and
not in the evaluation harness the gateway must not import. It formats nothing.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

from smallfirst.store.eval_results import EvalResult

__all__ = ["MACRO", "Z_95", "Row", "summarize", "wilson"]

Z_95 = 1.959963984540054
MACRO = "all (macro)"  # the row that averages accuracy over benchmarks


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
                benchmark=MACRO,
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
