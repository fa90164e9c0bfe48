"""The sweep of a router's one threshold over a table of evaluation results.

Every tunable router here reduces, on a table of evaluation results, to one matrix of
*acceptance scores* ``S`` of shape ``(n, m - 1)``: ``S[i, j]`` is how confident the router
is that model ``j`` (cheapest first) answers item ``i`` well. With threshold ``t``, item
``i`` goes to the first model ``j`` with ``S[i, j] >= t``, and to the reference (the last
model) when none qualifies:

    chosen_i(t) = min({j < m - 1 : S[i, j] >= t} | {m - 1})
               = #{j < m - 1 : R[i, j] < t},   R[i, j] = max(S[i, 0], ..., S[i, j])

The second form shows the property calibration relies on: ``chosen_i(t)`` is
non-decreasing in ``t`` for every item, so a higher threshold never picks a cheaper model
for anyone. A predictive router pays for the chosen model only; a cascade (``cumulative``)
pays for every model it tried, ``0 .. chosen_i``.

:func:`sweep` evaluates all thresholds at once: each (item, j) pair changes the totals by a
fixed amount when ``t`` passes ``R[i, j]``, so sorting those breakpoints and taking
cumulative sums gives accuracy, spend and model shares at every threshold in
``O(n m log(n m))``. Spend is reported as a fraction of what the reference model spent on
the same items (on the energy axis and on the cost axis).

When the table holds several benchmarks, the sweep also records, at every threshold, the
*worst benchmark's* quality ratio: min over benchmarks of routed accuracy / the reference's
accuracy on that benchmark. A quality target calibrated on it holds for each kind of task
in the data, so for any mix of them, not only for the mix the data happens to have.

This module knows nothing of features, models or policies: scores in, curves out (a
:class:`~smallfirst.routing.policy.Sweep`, the form an artifact stores and calibration reads).
The per-item rule itself is :func:`smallfirst.routing.strategies.choose`, shared with
``decide``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from smallfirst.routing.features import BoolArray, FloatArray, IntArray
from smallfirst.routing.policy import AXES, Axis, Sweep
from smallfirst.routing.training.table import Table

__all__ = ["HIGH", "LOW", "default_thresholds", "routed_accuracy", "spent", "sweep"]

# Scores are probabilities: LOW accepts the cheapest model for everyone, HIGH no one.
LOW = 0.0
HIGH = 1.0 + 1e-9
DEFAULT_MAX_POINTS = 1001


def spent(chosen: IntArray, spend: FloatArray, cumulative: bool) -> FloatArray:
    """What each item cost when answered by ``chosen`` (a cascade pays for every attempt)."""
    per_model = np.cumsum(spend, axis=1) if cumulative else spend
    return np.asarray(per_model[np.arange(len(chosen)), chosen], dtype=np.float64)


def default_thresholds(scores: FloatArray, max_points: int = DEFAULT_MAX_POINTS) -> FloatArray:
    """Just above every distinct breakpoint of ``scores`` (or of ``max_points`` quantiles of
    them), so each threshold moves at least one item up, plus :data:`LOW` and :data:`HIGH`
    so that the all-cheapest and all-reference routings are always part of a sweep."""
    reach = np.maximum.accumulate(scores, axis=1)
    finite = np.unique(reach[np.isfinite(reach)])
    if len(finite) > max_points:
        finite = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, max_points)))
    # an item escalates when its score is *below* the threshold: the least threshold that
    # moves the items at breakpoint r is the next float after r
    above = np.nextafter(finite, np.inf)
    # past the top breakpoint everything has escalated: that routing is HIGH's
    top = finite.max() if len(finite) else LOW
    inner = above[(above > LOW) & (above < HIGH) & (finite < top)]
    return np.concatenate([[LOW], inner, [HIGH]])


def _totals(
    reach: FloatArray, values: FloatArray, thresholds: FloatArray
) -> npt.NDArray[np.float64]:
    """sum_i values[i, chosen_i(t)] for each threshold t, by sorted breakpoints."""
    m = values.shape[1]
    total = np.full(len(thresholds), values[:, 0].sum(), dtype=np.float64)
    for j in range(m - 1):
        # passing R[i, j] moves item i from model j to model j + 1
        order = np.argsort(reach[:, j], kind="stable")
        breaks = reach[order, j]
        delta = np.concatenate([[0.0], np.cumsum(values[order, j + 1] - values[order, j])])
        total += delta[np.searchsorted(breaks, thresholds, side="left")]
    return total


def _worst_benchmark_ratio(
    reach: FloatArray, table: Table, thresholds: FloatArray
) -> FloatArray | None:
    """Min over benchmarks of routed / reference accuracy at each threshold (module
    docstring); None with fewer than two benchmarks the reference gets anything right on."""
    ratios = []
    benchmarks = np.asarray(table.benchmarks)
    for name in sorted(set(table.benchmarks)):
        rows = np.flatnonzero(benchmarks == name)
        correct = table.correct[rows].astype(np.float64)
        reference = float(correct[:, -1].sum())
        if reference > 0:  # a ratio to nothing bounds nothing
            ratios.append(_totals(reach[rows], correct, thresholds) / reference)
    if len(ratios) < 2:
        return None
    return np.asarray(np.min(ratios, axis=0), dtype=np.float64)


def sweep(
    scores: FloatArray,
    table: Table,
    *,
    cumulative: bool = False,
    thresholds: FloatArray | None = None,
) -> Sweep:
    """Evaluate the router with acceptance ``scores`` (n, m - 1) on ``table`` at every
    threshold (default: :func:`default_thresholds`)."""
    n, m = table.correct.shape
    if scores.shape != (n, m - 1):
        raise ValueError(f"scores must have shape {(n, m - 1)}, got {scores.shape}")
    if n == 0:
        raise ValueError("cannot sweep an empty table")
    ts = default_thresholds(scores) if thresholds is None else np.asarray(thresholds, float)
    reach = np.maximum.accumulate(scores, axis=1) if m > 1 else np.zeros((n, 0))
    accuracy = _totals(reach, table.correct.astype(np.float64), ts) / n
    fractions: dict[Axis, FloatArray | None] = {}
    for axis in AXES:
        spend = table.axis(axis)
        reference = None if spend is None else float(spend[:, -1].sum())
        if spend is None or reference is None or reference <= 0:
            fractions[axis] = None
            continue
        per_model = np.cumsum(spend, axis=1) if cumulative else spend
        fractions[axis] = _totals(reach, per_model, ts) / reference
    shares = np.zeros((len(ts), m), dtype=np.float64)
    for j in range(m):
        one_hot = np.zeros((n, m), dtype=np.float64)
        one_hot[:, j] = 1.0
        shares[:, j] = _totals(reach, one_hot, ts) / n
    return Sweep(
        thresholds=ts,
        accuracy=accuracy,
        energy_fraction=fractions["energy"],
        cost_fraction=fractions["cost"],
        shares=shares,
        reference_accuracy=float(table.correct[:, -1].mean()),
        cumulative=cumulative,
        worst_benchmark_ratio=_worst_benchmark_ratio(reach, table, ts),
    )


def routed_accuracy(chosen: IntArray, correct: BoolArray) -> float:
    return float(correct[np.arange(len(chosen)), chosen].mean())
