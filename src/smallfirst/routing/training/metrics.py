"""Routing metrics from the literature, on the energy axis and on the cost axis.

A router swept over its threshold traces points ``(c_k, a_k)``: ``c`` is what it spent as a
fraction of what the reference (strong) model spends on the same items — joules on the
energy axis, dollars on the cost axis — and ``a`` its accuracy. The weak model is the
cheapest candidate, at ``(c_w, a_w)``; the strong model is the reference, at ``(1, a_s)``.
RouteLLM's x axis is the share of calls to the strong model, which is our ``c`` with
``c_w = 0``; here the weak model costs something, so its spend ``c_w > 0`` is where the
axis starts.

The router's curve ``A(c)``
    From the points, keep the Pareto frontier (sort by cost; keep a point only if it is more
    accurate than every cheaper one), join consecutive frontier points linearly (mixing two
    thresholds at random achieves any point between them), and hold the last value to the
    right. ``A(c)`` is then the accuracy reachable with spend at most ``c``. Left of the
    first point it holds the first value; every swept router has a point at ``c_w`` (its
    lowest threshold routes everything to the weak model).

PGR, the performance gap recovered (RouteLLM, Ong et al. 2024, "RouteLLM: Learning to
Route LLMs with Preference Data", sec. 5.1)
    ``PGR(c) = (A(c) - a_w) / (a_s - a_w)``.

APGR, the average performance gap recovered (ibid.)
    ``APGR = 1 / (1 - c_w) * integral from c_w to 1 of PGR(c) dc``, computed exactly on the
    piecewise-linear ``A`` (the trapezoid rule is exact there). With ``c_w = 0`` this is
    RouteLLM's ``integral_0^1 PGR(c) dc``. The random router (the straight line from the
    weak to the strong point) scores exactly 0.5; an oracle scores more than 1 wherever the
    models' mistakes differ. ``None`` when ``a_s <= a_w`` (no gap to recover).

CPT(x), the call-performance threshold (ibid.)
    The least spend fraction ``c`` with ``PGR(c) >= x``, i.e. the first ``c`` where ``A``
    reaches ``a_w + x (a_s - a_w)``; RouteLLM reports it as a percentage of calls to the
    strong model, here it is the fraction of the strong model's energy (or cost).
    We report CPT(50%) and CPT(80%). ``None`` when the router never gets there.

AIQ, the average improvement in quality (RouterBench, Hu et al. 2024, "RouterBench: A
Benchmark for Multi-LLM Routing System", sec. 3)
    ``AIQ = 1 / (c_max - c_min) * integral from c_min to c_max of A~(c) dc``, where ``A~``
    is the router's *non-decreasing convex hull* (the upper concave hull of its Pareto
    points, held flat to the right) and ``[c_min, c_max]`` the spend range of the single
    models (here the weak model's fraction to the strong model's, 1). In accuracy units:
    the random router scores ``(a_w + a_s) / 2``.

ROC AUC of a model's predicted P(correct)
    Not a routing metric but what limits one: the probability that a random item the model
    got right has a higher predicted P than a random item it got wrong (the Mann-Whitney
    statistic, ties counted half). Within one benchmark, 0.5 means the router cannot tell
    that benchmark's easy items from its hard ones and can only route it as a whole.

Baselines: every single model is a point; random is the line between the weak and strong
points; the oracle's curve (``oracle`` in :mod:`.oracle`) starts with every item on the weak
model and moves, one at a time and cheapest extra spend first, each item the weak model got
wrong to the cheapest model that got it right, ending at the oracle's routing.

This module is arithmetic on curves; it runs no router.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from smallfirst.routing.features import BoolArray, FloatArray

__all__ = [
    "AxisMetrics",
    "Point",
    "aiq",
    "apgr",
    "axis_metrics",
    "cpt",
    "frontier",
    "integrate",
    "oracle_curve",
    "random_curve",
    "roc_auc",
    "upper_hull",
]


@dataclass(frozen=True, slots=True)
class Point:
    cost_fraction: float
    accuracy: float


@dataclass(frozen=True, slots=True)
class AxisMetrics:
    apgr: float | None
    cpt50: float | None
    cpt80: float | None
    aiq: float | None

    def to_json(self) -> dict[str, Any]:
        return {"apgr": self.apgr, "cpt50": self.cpt50, "cpt80": self.cpt80, "aiq": self.aiq}


def frontier(costs: FloatArray, accuracies: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The Pareto frontier: by increasing cost, each point more accurate than all cheaper."""
    c = np.asarray(costs, dtype=np.float64)
    a = np.asarray(accuracies, dtype=np.float64)
    keep = ~(np.isnan(c) | np.isnan(a))
    c, a = c[keep], a[keep]
    if not len(c):
        raise ValueError("a curve needs at least one point")
    order = np.lexsort((-a, c))  # by cost, the most accurate first among equal costs
    xs: list[float] = []
    ys: list[float] = []
    for i in order:
        if not ys or a[i] > ys[-1]:
            xs.append(float(c[i]))
            ys.append(float(a[i]))
    return np.asarray(xs), np.asarray(ys)


def upper_hull(xs: FloatArray, ys: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The upper concave hull of frontier points (Andrew's monotone chain, upper half).

    On a Pareto frontier the last point is the most accurate, so the hull is
    non-decreasing: RouterBench's "non-decreasing convex hull".
    """
    hx: list[float] = []
    hy: list[float] = []
    for x, y in zip(xs, ys, strict=True):
        while len(hx) >= 2:
            # drop the middle point unless it lies strictly above the chord
            cross = (hx[-1] - hx[-2]) * (y - hy[-2]) - (hy[-1] - hy[-2]) * (x - hx[-2])
            if cross >= 0:
                hx.pop()
                hy.pop()
            else:
                break
        hx.append(float(x))
        hy.append(float(y))
    return np.asarray(hx), np.asarray(hy)


def integrate(xs: FloatArray, ys: FloatArray, lo: float, hi: float) -> float:
    """Integral over [lo, hi] of the piecewise-linear curve through (xs, ys), held flat
    beyond its ends (exact: trapezoids between the knots)."""
    if hi <= lo:
        return 0.0
    inner = xs[(xs > lo) & (xs < hi)]
    knots = np.concatenate([[lo], inner, [hi]])
    values = np.interp(knots, xs, ys)
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(knots)))


def apgr(costs: FloatArray, accuracies: FloatArray, weak: Point, strong: Point) -> float | None:
    """Average performance gap recovered over [c_w, c_s] (module docstring)."""
    gap = strong.accuracy - weak.accuracy
    span = strong.cost_fraction - weak.cost_fraction
    if gap <= 0 or span <= 0:
        return None
    xs, ys = frontier(costs, accuracies)
    area = integrate(xs, ys, weak.cost_fraction, strong.cost_fraction)
    return (area / span - weak.accuracy) / gap


def cpt(
    costs: FloatArray, accuracies: FloatArray, weak: Point, strong: Point, recovered: float
) -> float | None:
    """The least spend fraction at which the curve recovers ``recovered`` of the gap."""
    gap = strong.accuracy - weak.accuracy
    if gap <= 0:
        return None
    level = weak.accuracy + recovered * gap
    xs, ys = frontier(costs, accuracies)
    if ys[-1] < level - 1e-12:
        return None
    if ys[0] >= level:
        return float(xs[0])
    # ys is strictly increasing on a frontier, so the inverse is well defined
    return float(np.interp(level, ys, xs))


def aiq(costs: FloatArray, accuracies: FloatArray, c_min: float, c_max: float) -> float | None:
    """Average accuracy of the non-decreasing convex hull over [c_min, c_max]."""
    if c_max <= c_min:
        return None
    hx, hy = upper_hull(*frontier(costs, accuracies))
    return integrate(hx, hy, c_min, c_max) / (c_max - c_min)


def axis_metrics(
    costs: FloatArray,
    accuracies: FloatArray,
    weak: Point,
    strong: Point,
    c_min: float,
    c_max: float,
) -> AxisMetrics:
    return AxisMetrics(
        apgr=apgr(costs, accuracies, weak, strong),
        cpt50=cpt(costs, accuracies, weak, strong, 0.5),
        cpt80=cpt(costs, accuracies, weak, strong, 0.8),
        aiq=aiq(costs, accuracies, c_min, c_max),
    )


def random_curve(weak: Point, strong: Point) -> tuple[FloatArray, FloatArray]:
    """The random router's expected curve: weak with probability 1 - p, strong with p."""
    return (
        np.asarray([weak.cost_fraction, strong.cost_fraction]),
        np.asarray([weak.accuracy, strong.accuracy]),
    )


def oracle_curve(
    correct: BoolArray, spend: FloatArray, choice: np.ndarray[Any, np.dtype[np.intp]]
) -> tuple[FloatArray, FloatArray]:
    """From all-weak to the oracle's routing ``choice``, one item at a time, cheapest
    extra spend first (module docstring). Fractions of the reference's total spend."""
    n = len(correct)
    reference = float(spend[:, -1].sum())
    rows = np.arange(n)
    moved = np.flatnonzero(choice != 0)
    extra = spend[moved, choice[moved]] - spend[moved, 0]
    gained = correct[moved, choice[moved]].astype(float) - correct[moved, 0].astype(float)
    order = np.argsort(extra, kind="stable")
    base_cost = float(spend[:, 0].sum())
    base_correct = float(correct[rows, 0].sum())
    costs = (base_cost + np.concatenate([[0.0], np.cumsum(extra[order])])) / reference
    accs = (base_correct + np.concatenate([[0.0], np.cumsum(gained[order])])) / n
    return costs, accs


def roc_auc(scores: FloatArray, labels: BoolArray) -> float | None:
    """ROC AUC of ``scores`` for ``labels`` (module docstring); None without both classes."""
    y = np.asarray(labels, dtype=bool)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(y), dtype=np.float64)
    ranks[order] = np.arange(1, len(y) + 1, dtype=np.float64)
    # tied scores share the mean of their ranks
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    u = ranks[y].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))
