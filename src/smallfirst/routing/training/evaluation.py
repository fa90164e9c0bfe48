"""Judge a fitted router on held-out evaluation results: curves and metrics per strategy.

For every tuned strategy (predictive, cascade, cascade:output) the threshold is swept over
the held-out items (:mod:`.sweep`) and the curve scored with APGR, CPT(50%), CPT(80%) and AIQ
(:mod:`.metrics`) on the energy axis and on the cost axis, beside the baselines: random
(the weak-strong line), every single model (a point) and the oracle. Then each strategy is
run at the thresholds the artifact calibrated (on the training split) for a few policies,
to show what those policies deliver on items the router has not seen: accuracy as a share
of the reference's, and energy and cost as fractions of the reference's. Last, how well
each model's predicted P(correct) separates its right answers from its wrong ones (ROC AUC,
over all items and within each benchmark), which is what bounds the savings.

Accuracy is over items (micro average): each held-out item weighs the same, whatever its
benchmark. This module reads a table and an artifact and computes; it fits nothing and
formats nothing (:mod:`.report` writes the tables, report.md and the plot).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from smallfirst.routing.artifact import RouterArtifact
from smallfirst.routing.features import FloatArray, IntArray
from smallfirst.routing.policy import AXES, DEFAULT_POLICY, Axis, Policy
from smallfirst.routing.registry import DEFAULT_STRATEGY
from smallfirst.routing.strategies import choose
from smallfirst.routing.training.metrics import (
    AxisMetrics,
    Point,
    axis_metrics,
    oracle_curve,
    random_curve,
    roc_auc,
)
from smallfirst.routing.training.oracle import Ceiling, ceilings, oracle_choice
from smallfirst.routing.training.scores import CUMULATIVE, TUNED, strategy_scores
from smallfirst.routing.training.sweep import spent, sweep
from smallfirst.routing.training.table import Table

__all__ = ["REPORT_POLICIES", "CalibratedPoint", "Curve", "Evaluation", "auto_point", "evaluate"]

CurveKind = Literal["router", "random", "oracle", "model"]

REPORT_POLICIES: Final[tuple[Policy, ...]] = (
    Policy("quality", 0.90),
    Policy("quality", 0.95),
    Policy("quality", 1.0),
    Policy("energy", 0.3),
    Policy("energy", 0.5),
)


@dataclass(frozen=True, eq=False)
class Curve:
    """A strategy's points on the held-out items, and its metrics per axis."""

    name: str
    kind: CurveKind
    accuracy: FloatArray
    fractions: dict[Axis, FloatArray | None]
    metrics: dict[Axis, AxisMetrics | None]


@dataclass(frozen=True, slots=True)
class CalibratedPoint:
    """A strategy at the threshold calibrated for ``policy``, measured on held-out items."""

    strategy: str
    policy: str
    threshold: float
    feasible: bool  # whether calibration could meet the target on the training split
    accuracy: float
    quality_ratio: float  # accuracy / the reference's accuracy
    energy_fraction: float | None
    cost_fraction: float | None
    shares: dict[str, float]  # share of items answered by each model
    # per benchmark: items, accuracy, the reference's accuracy, energy fraction, shares
    by_benchmark: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "policy": self.policy,
            "threshold": self.threshold,
            "feasible_on_calibration": self.feasible,
            "accuracy": self.accuracy,
            "quality_ratio": _finite(self.quality_ratio),
            "energy_fraction": self.energy_fraction,
            "cost_fraction": self.cost_fraction,
            "shares": self.shares,
            "by_benchmark": self.by_benchmark,
        }


@dataclass(frozen=True, eq=False)
class Evaluation:
    models: tuple[str, ...]
    n_items: int
    items_per_benchmark: dict[str, int]
    model_accuracy: dict[str, float]
    curves: list[Curve]
    calibrated: list[CalibratedPoint]
    # ROC AUC of the predictive P(correct) per benchmark ("all": every item) and model
    discrimination: dict[str, dict[str, float | None]] = dataclasses.field(default_factory=dict)
    ceilings: list[Ceiling] = dataclasses.field(default_factory=list)

    def curve(self, name: str) -> Curve:
        for c in self.curves:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        def floats(a: FloatArray | None) -> list[float | None] | None:
            return None if a is None else [_finite(v) for v in a]

        return {
            "models": list(self.models),
            "n_items": self.n_items,
            "items_per_benchmark": self.items_per_benchmark,
            "model_accuracy": self.model_accuracy,
            "strategies": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "metrics": {
                        axis: (None if m is None else m.to_json()) for axis, m in c.metrics.items()
                    },
                    "points": {
                        "accuracy": floats(c.accuracy),
                        **{f"{axis}_fraction": floats(c.fractions[axis]) for axis in AXES},
                    },
                }
                for c in self.curves
            ],
            "calibrated": [p.to_json() for p in self.calibrated],
            "ceilings": [c.to_json() for c in self.ceilings],
            "discrimination_auc": self.discrimination,
        }


def _finite(v: float) -> float | None:
    # JSON has no NaN or infinity; None says "no number" in every reader
    return float(v) if math.isfinite(v) else None


def _spend_fraction(
    table: Table, chosen: np.ndarray[Any, Any], axis: Axis, cumulative: bool
) -> float | None:
    spend = table.axis(axis)
    if spend is None or spend[:, -1].sum() <= 0:
        return None
    return float(spent(chosen, spend, cumulative).sum() / spend[:, -1].sum())


def _by_benchmark(
    table: Table, chosen: np.ndarray[Any, Any], cumulative: bool
) -> dict[str, dict[str, Any]]:
    """A calibrated point broken down by benchmark: a quality target met on the mix can hide
    a benchmark given up on (expensive items sent to a model that is rarely right there)."""
    out = {}
    benchmarks = np.asarray(table.benchmarks)
    for b in sorted(set(table.benchmarks)):
        rows = np.flatnonzero(benchmarks == b)
        part, picked = table.take(rows), chosen[rows]
        out[b] = {
            "items": len(rows),
            "accuracy": float(part.correct[np.arange(len(rows)), picked].mean()),
            "reference_accuracy": float(part.correct[:, -1].mean()),
            "energy_fraction": _spend_fraction(part, picked, "energy", cumulative),
            "shares": {name: float(np.mean(picked == j)) for j, name in enumerate(table.models)},
        }
    return out


def _discrimination(artifact: RouterArtifact, table: Table) -> dict[str, dict[str, float | None]]:
    """ROC AUC of each model's predicted P(correct), over all items and within each
    benchmark: what bounds how much a router can save without losing accuracy."""
    models = [m for m in table.models if m in artifact.predictive]
    p = {m: artifact.predictive[m].predict(table.features) for m in models}
    benchmarks = np.asarray(table.benchmarks)
    groups = {"all": np.arange(len(table))}
    groups |= {b: np.flatnonzero(benchmarks == b) for b in sorted(set(table.benchmarks))}
    return {
        name: {m: roc_auc(p[m][rows], table.correct[rows, table.models.index(m)]) for m in models}
        for name, rows in groups.items()
    }


def auto_point(calibrated: list[CalibratedPoint]) -> CalibratedPoint | None:
    """The calibrated point of what ``auto`` serves: the default strategy and policy."""
    return next(
        (
            p
            for p in calibrated
            if p.strategy == DEFAULT_STRATEGY and p.policy == str(DEFAULT_POLICY)
        ),
        None,
    )


Singles = dict[Axis, FloatArray | None]


@dataclass(frozen=True, eq=False)
class _Scorer:
    """Metrics of a curve on one axis, against the table's weakest and strongest model."""

    single: Singles  # each model's spend fraction per axis
    model_accuracy: FloatArray

    def __call__(
        self, axis: Axis, costs: FloatArray | None, accs: FloatArray
    ) -> AxisMetrics | None:
        points = self.single[axis]
        if costs is None or points is None:
            return None
        weak = Point(float(points[0]), float(self.model_accuracy[0]))
        strong = Point(float(points[-1]), float(self.model_accuracy[-1]))
        return axis_metrics(costs, accs, weak, strong, float(points.min()), float(points.max()))


def _single_points(table: Table) -> Singles:
    """Each model's spend as a fraction of the reference's, per axis (None: unknown)."""
    single: Singles = {}
    for axis in AXES:
        spend = table.axis(axis)
        if spend is None or spend[:, -1].sum() <= 0:
            single[axis] = None
        else:
            single[axis] = spend.sum(axis=0) / spend[:, -1].sum()
    return single


def _router_curves(scores: dict[str, FloatArray], table: Table, metrics: _Scorer) -> list[Curve]:
    curves = []
    for strategy, s in scores.items():
        curve = sweep(s, table, cumulative=CUMULATIVE[strategy])
        fractions = {axis: curve.fraction(axis) for axis in AXES}
        by_axis = {a: metrics(a, fractions[a], curve.accuracy) for a in AXES}
        curves.append(Curve(strategy, "router", curve.accuracy, fractions, by_axis))
    return curves


def _random_curve(metrics: _Scorer) -> Curve:
    """The expected line between the weak and the strong model."""
    fractions: dict[Axis, FloatArray | None] = {}
    by_axis: dict[Axis, AxisMetrics | None] = {}
    acc = metrics.model_accuracy
    line_acc = np.asarray([acc[0], acc[-1]])
    for axis in AXES:
        points = metrics.single[axis]
        if points is None:
            fractions[axis] = by_axis[axis] = None
            continue
        xs, ys = random_curve(
            Point(float(points[0]), float(line_acc[0])),
            Point(float(points[-1]), float(line_acc[1])),
        )
        fractions[axis] = xs
        by_axis[axis] = metrics(axis, xs, ys)
    return Curve("random", "random", line_acc, fractions, by_axis)


def _oracle_curve(table: Table, metrics: _Scorer) -> Curve:
    """The oracle's curve per axis (its points differ by axis: the order of the moves does)."""
    choice = oracle_choice(table.correct)
    fractions: dict[Axis, FloatArray | None] = {}
    by_axis: dict[Axis, AxisMetrics | None] = {}
    acc: FloatArray = np.asarray([float(table.correct[np.arange(len(table)), choice].mean())])
    for axis in AXES:
        spend = table.axis(axis)
        if spend is None or metrics.single[axis] is None:
            fractions[axis] = by_axis[axis] = None
            continue
        xs, ys = oracle_curve(table.correct, spend, choice)
        fractions[axis] = xs
        acc = ys
        by_axis[axis] = metrics(axis, xs, ys)
    return Curve("oracle", "oracle", acc, fractions, by_axis)


def _model_points(table: Table, metrics: _Scorer) -> list[Curve]:
    curves = []
    for j, name in enumerate(table.models):
        point: dict[Axis, FloatArray | None] = {}
        for a in AXES:
            at = metrics.single[a]
            point[a] = None if at is None else at[j : j + 1]
        no_metrics: dict[Axis, AxisMetrics | None] = {a: None for a in AXES}
        curves.append(Curve(name, "model", metrics.model_accuracy[j : j + 1], point, no_metrics))
    return curves


def _calibrated(
    artifact: RouterArtifact, table: Table, scores: dict[str, FloatArray]
) -> list[CalibratedPoint]:
    """Each strategy at the thresholds calibrated for :data:`REPORT_POLICIES`."""
    n = len(table)
    reference_accuracy = float(table.correct[:, -1].mean())
    out = []
    for strategy in TUNED:
        for policy in REPORT_POLICIES:
            curve = artifact.calibration[strategy]
            if policy.kind != "quality" and curve.fraction(policy.kind) is None:
                continue
            cal = artifact.calibrate(strategy, policy)
            chosen: IntArray = choose(scores[strategy], cal.threshold)
            accuracy = float(table.correct[np.arange(n), chosen].mean())
            cumulative = CUMULATIVE[strategy]
            out.append(
                CalibratedPoint(
                    strategy=strategy,
                    policy=str(policy),
                    threshold=cal.threshold,
                    feasible=cal.feasible,
                    accuracy=accuracy,
                    quality_ratio=accuracy / reference_accuracy if reference_accuracy else math.nan,
                    energy_fraction=_spend_fraction(table, chosen, "energy", cumulative),
                    cost_fraction=_spend_fraction(table, chosen, "cost", cumulative),
                    shares={
                        name: float(np.mean(chosen == j)) for j, name in enumerate(table.models)
                    },
                    by_benchmark=_by_benchmark(table, chosen, cumulative),
                )
            )
    return out


def evaluate(artifact: RouterArtifact, table: Table) -> Evaluation:
    """Sweep, score and compare every strategy of ``artifact`` on ``table`` (held out)."""
    table = table.with_models([c.name for c in artifact.candidates])
    model_accuracy = table.correct.mean(axis=0)
    metrics = _Scorer(_single_points(table), model_accuracy)
    scores = {
        strategy: strategy_scores(
            strategy,
            artifact.predictive,
            artifact.verifiers,
            table,
            artifact.candidates,
            artifact.spend,
        )
        for strategy in TUNED
    }
    calibrated = _calibrated(artifact, table, scores)
    auto = auto_point(calibrated)
    per_benchmark: dict[str, int] = {}
    for b in table.benchmarks:
        per_benchmark[b] = per_benchmark.get(b, 0) + 1
    return Evaluation(
        models=table.models,
        n_items=len(table),
        items_per_benchmark=dict(sorted(per_benchmark.items())),
        model_accuracy={
            name: float(a) for name, a in zip(table.models, model_accuracy, strict=True)
        },
        curves=[
            *_router_curves(scores, table, metrics),
            _random_curve(metrics),
            _oracle_curve(table, metrics),
            *_model_points(table, metrics),
        ],
        calibrated=calibrated,
        discrimination=_discrimination(artifact, table),
        ceilings=ceilings(table, None if auto is None else auto.energy_fraction),
    )
