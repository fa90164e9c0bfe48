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
from smallfirst.routing.data import AXES, Axis, Table
from smallfirst.routing.features import FloatArray
from smallfirst.routing.fit import CUMULATIVE, TUNED, strategy_scores
from smallfirst.routing.metrics import (
    AxisMetrics,
    Point,
    axis_metrics,
    oracle_curve,
    random_curve,
    roc_auc,
)
from smallfirst.routing.policy import Policy
from smallfirst.routing.strategies import OracleRouter
from smallfirst.routing.sweep import choose, spent, sweep

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


def evaluate(artifact: RouterArtifact, table: Table) -> Evaluation:
    """Sweep, score and compare every strategy of ``artifact`` on ``table`` (held out)."""
    table = table.with_models([c.name for c in artifact.candidates])
    n = len(table)
    model_accuracy = table.correct.mean(axis=0)
    curves: list[Curve] = []
    # the single models, and the axes' reference points
    single: dict[Axis, FloatArray | None] = {}
    for axis in AXES:
        spend = table.axis(axis)
        if spend is None or spend[:, -1].sum() <= 0:
            single[axis] = None
        else:
            single[axis] = spend.sum(axis=0) / spend[:, -1].sum()

    def metrics_for(axis: Axis, costs: FloatArray | None, accs: FloatArray) -> AxisMetrics | None:
        points = single[axis]
        if costs is None or points is None:
            return None
        weak = Point(float(points[0]), float(model_accuracy[0]))
        strong = Point(float(points[-1]), float(model_accuracy[-1]))
        return axis_metrics(costs, accs, weak, strong, float(points.min()), float(points.max()))

    scores: dict[str, FloatArray] = {}
    for strategy in TUNED:
        scores[strategy] = strategy_scores(
            strategy,
            artifact.predictive,
            artifact.verifiers,
            table,
            artifact.candidates,
            artifact.spend,
        )
        curve = sweep(scores[strategy], table, cumulative=CUMULATIVE[strategy])
        fractions = {axis: curve.fraction(axis) for axis in AXES}
        curves.append(
            Curve(
                name=strategy,
                kind="router",
                accuracy=curve.accuracy,
                fractions=fractions,
                metrics={a: metrics_for(a, fractions[a], curve.accuracy) for a in AXES},
            )
        )

    # random: the expected line between the weak and the strong model
    random_fractions: dict[Axis, FloatArray | None] = {}
    random_metrics: dict[Axis, AxisMetrics | None] = {}
    line_acc = np.asarray([model_accuracy[0], model_accuracy[-1]])
    for axis in AXES:
        points = single[axis]
        if points is None:
            random_fractions[axis] = None
            random_metrics[axis] = None
            continue
        xs, ys = random_curve(
            Point(float(points[0]), float(line_acc[0])),
            Point(float(points[-1]), float(line_acc[1])),
        )
        random_fractions[axis] = xs
        random_metrics[axis] = metrics_for(axis, xs, ys)
    curves.append(Curve("random", "random", line_acc, random_fractions, random_metrics))

    # the oracle's curve, per axis (its points differ by axis: the order of the moves does)
    choice = OracleRouter.table_choice(table)
    oracle_fractions: dict[Axis, FloatArray | None] = {}
    oracle_metrics: dict[Axis, AxisMetrics | None] = {}
    oracle_acc: FloatArray = np.asarray([float(table.correct[np.arange(n), choice].mean())])
    for axis in AXES:
        spend = table.axis(axis)
        if spend is None or single[axis] is None:
            oracle_fractions[axis] = None
            oracle_metrics[axis] = None
            continue
        xs, ys = oracle_curve(table.correct, spend, choice)
        oracle_fractions[axis] = xs
        oracle_acc = ys
        oracle_metrics[axis] = metrics_for(axis, xs, ys)
    curves.append(Curve("oracle", "oracle", oracle_acc, oracle_fractions, oracle_metrics))

    for j, name in enumerate(table.models):
        point: dict[Axis, FloatArray | None] = {}
        for a in AXES:
            at = single[a]
            point[a] = None if at is None else at[j : j + 1]
        curves.append(
            Curve(
                name=name,
                kind="model",
                accuracy=model_accuracy[j : j + 1],
                fractions=point,
                metrics={a: None for a in AXES},
            )
        )

    calibrated = []
    reference_accuracy = float(model_accuracy[-1])
    for strategy in TUNED:
        for policy in REPORT_POLICIES:
            if (
                policy.kind != "quality"
                and artifact.calibration[strategy].fraction(policy.kind) is None
            ):
                continue
            cal = artifact.calibrate(strategy, policy)
            chosen = choose(scores[strategy], cal.threshold)
            accuracy = float(table.correct[np.arange(n), chosen].mean())
            calibrated.append(
                CalibratedPoint(
                    strategy=strategy,
                    policy=str(policy),
                    threshold=cal.threshold,
                    feasible=cal.feasible,
                    accuracy=accuracy,
                    quality_ratio=accuracy / reference_accuracy if reference_accuracy else math.nan,
                    energy_fraction=_spend_fraction(table, chosen, "energy", CUMULATIVE[strategy]),
                    cost_fraction=_spend_fraction(table, chosen, "cost", CUMULATIVE[strategy]),
                    shares={
                        name: float(np.mean(chosen == j)) for j, name in enumerate(table.models)
                    },
                    by_benchmark=_by_benchmark(table, chosen, CUMULATIVE[strategy]),
                )
            )
    per_benchmark: dict[str, int] = {}
    for b in table.benchmarks:
        per_benchmark[b] = per_benchmark.get(b, 0) + 1
    return Evaluation(
        models=table.models,
        n_items=n,
        items_per_benchmark=dict(sorted(per_benchmark.items())),
        model_accuracy={
            name: float(a) for name, a in zip(table.models, model_accuracy, strict=True)
        },
        curves=curves,
        calibrated=calibrated,
        discrimination=_discrimination(artifact, table),
    )
