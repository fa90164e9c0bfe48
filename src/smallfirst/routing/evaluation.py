"""Judge a fitted router on held-out evaluation results: curves, metrics, report, plot.

For every tuned strategy (predictive, cascade, cascade:output) the threshold is swept over
the held-out items (:mod:`.sweep`) and the curve scored with APGR, CPT(50%), CPT(80%) and AIQ
(:mod:`.metrics`) on the energy axis and on the cost axis, beside the baselines: random
(the weak-strong line), every single model (a point) and the oracle. Then each strategy is
run at the thresholds the artifact calibrated (on the training split) for a few policies,
to show what those policies deliver on items the router has not seen: accuracy as a share
of the reference's, and energy and cost as fractions of the reference's.

Accuracy is over items (micro average): each held-out item weighs the same, whatever its
benchmark. This module reads a table and an artifact, and writes report files; it fits
nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
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
    )


# --- presentation -------------------------------------------------------------------------


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


METRIC_HEADERS: Final = (
    "strategy",
    "APGR (J)",
    "CPT50 (J)",
    "CPT80 (J)",
    "AIQ (J)",
    "APGR ($)",
    "CPT50 ($)",
    "CPT80 ($)",
    "AIQ ($)",
)
CALIBRATED_HEADERS: Final = (
    "strategy",
    "policy",
    "threshold",
    "accuracy",
    "vs reference",
    "energy",
    "cost",
    "shares",
)


def metric_rows(evaluation: Evaluation) -> list[list[str]]:
    rows = []
    for c in evaluation.curves:
        if c.kind == "model":
            continue
        cells = [c.name]
        for axis in AXES:
            m = c.metrics[axis]
            if m is None:
                cells += ["-"] * 4
            else:
                cells += [_num(m.apgr), _pct(m.cpt50), _pct(m.cpt80), _pct(m.aiq)]
        rows.append(cells)
    return rows


TARGET_APGR: Final = 0.75
TARGET_QUALITY: Final = 0.95
TARGET_ENERGY: Final = 0.5


def least_energy_at(curve: Curve, accuracy: float) -> float | None:
    """The least energy fraction among ``curve``'s held-out points reaching ``accuracy``.

    In hindsight (the threshold is picked on the held-out items themselves): what the
    strategy *can* do; the calibrated rows say what it does with a threshold set beforehand.
    """
    fractions = curve.fractions.get("energy")
    if fractions is None:
        return None
    reached = fractions[curve.accuracy >= accuracy - 1e-12]
    return float(reached.min()) if reached.size else None


def target_lines(evaluation: Evaluation) -> list[str]:
    """The issue's targets on the energy axis, met or missed, with the oracle beside them."""
    reference = evaluation.model_accuracy[evaluation.models[-1]]
    bar = TARGET_QUALITY * reference
    routers = [c for c in evaluation.curves if c.kind == "router"]
    scored = [
        (m.apgr, c)
        for c in routers
        if (m := c.metrics["energy"]) is not None and m.apgr is not None
    ]
    if not scored:
        return ["- no energy figures: the targets cannot be checked"]
    apgr, best = max(scored, key=lambda t: t[0])
    oracle = evaluation.curve("oracle")
    oracle_m = oracle.metrics["energy"]
    lines = [
        f"- APGR (energy) of the best strategy, `{best.name}`: {apgr:.3f} "
        f"(target >= {TARGET_APGR}: {'met' if apgr >= TARGET_APGR else 'missed'}; "
        f"random 0.500, oracle {_num(oracle_m.apgr if oracle_m else None)})",
    ]
    for c in routers:
        least = least_energy_at(c, bar)
        calibrated = next(
            (
                p
                for p in evaluation.calibrated
                if p.strategy == c.name and p.policy == f"auto:quality={TARGET_QUALITY:g}"
            ),
            None,
        )
        verdict = (
            "no threshold reaches it"
            if least is None
            else f"{_pct(least)} of the reference's energy in hindsight "
            f"({'met' if least <= TARGET_ENERGY else 'missed'})"
        )
        if calibrated is not None:
            verdict += (
                f"; calibrated auto:quality={TARGET_QUALITY:g}: {_pct(calibrated.quality_ratio)}"
                f" of the reference's accuracy at {_pct(calibrated.energy_fraction)} energy"
            )
        lines.append(f"- `{c.name}` at >= {TARGET_QUALITY:.0%} of the reference: {verdict}")
    lines.append(
        f"- oracle at >= {TARGET_QUALITY:.0%}: {_pct(least_energy_at(oracle, bar))} of the "
        f"reference's energy (target <= {TARGET_ENERGY:.0%})"
    )
    return lines


def model_rows(evaluation: Evaluation) -> list[list[str]]:
    rows = []
    for c in evaluation.curves:
        if c.kind != "model":
            continue
        e, d = c.fractions["energy"], c.fractions["cost"]
        rows.append(
            [
                c.name,
                _pct(float(c.accuracy[0])),
                "-" if e is None else _pct(float(e[0])),
                "-" if d is None else _pct(float(d[0])),
            ]
        )
    return rows


def calibrated_rows(evaluation: Evaluation) -> list[list[str]]:
    return [
        [
            p.strategy,
            p.policy + ("" if p.feasible else " (infeasible)"),
            _num(p.threshold),
            _pct(p.accuracy),
            _pct(p.quality_ratio),
            _pct(p.energy_fraction),
            _pct(p.cost_fraction),
            " / ".join(f"{100 * s:.0f}" for s in p.shares.values()),
        ]
        for p in evaluation.calibrated
    ]


def _md_table(headers: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(evaluation: Evaluation, artifact: RouterArtifact, plot_name: str | None) -> str:
    """report.md: what was evaluated, the metrics, the calibrated points, the formulas."""
    bench = ", ".join(f"{b} {n}" for b, n in evaluation.items_per_benchmark.items())
    parts = [
        "# Router evaluation (held-out items)",
        "",
        f"- router: fitted {artifact.created_at} on runs {', '.join(artifact.training_run_ids)}"
        f" ({artifact.training.get('n_train', '?')} training items, seed {artifact.seed})",
        f"- held-out: {evaluation.n_items} items ({bench})",
        f"- models, cheapest first: {', '.join(evaluation.models)} (the last is the reference)",
        "",
        "## Targets (energy axis)",
        "",
        *target_lines(evaluation),
        "",
        "## Single models",
        "",
        _md_table(
            ["model", "accuracy", "energy vs reference", "cost vs reference"],
            model_rows(evaluation),
        ),
        "",
        "## Routing metrics",
        "",
        "(J) on the energy axis, ($) on the cost axis. APGR: average performance gap "
        "recovered (RouteLLM); CPT50/80: least share of the reference's energy or cost that "
        "recovers 50%/80% of the gap between the cheapest model and the reference; AIQ: "
        "average accuracy of the non-decreasing convex hull over the models' cost range "
        "(RouterBench). Random is the straight line between the cheapest model and the "
        "reference (APGR 0.5); formulas in `smallfirst.routing.metrics`.",
        "",
        _md_table(list(METRIC_HEADERS), metric_rows(evaluation)),
        "",
        "## At the calibrated thresholds",
        "",
        "Thresholds calibrated on the training split (out-of-fold), applied to the held-out "
        "items. Shares: % of items answered by each model, cheapest first (a cascade's "
        "final answer).",
        "",
        _md_table(list(CALIBRATED_HEADERS), calibrated_rows(evaluation)),
        "",
        *_default_by_benchmark(evaluation),
    ]
    if plot_name:
        parts += [f"![quality vs spend]({plot_name})", ""]
    return "\n".join(parts)


def _default_by_benchmark(evaluation: Evaluation) -> list[str]:
    """The section on what the server's default policy does to each benchmark."""
    point = next(
        (
            p
            for p in evaluation.calibrated
            if p.strategy == "predictive" and p.policy == "auto:quality=0.95"
        ),
        None,
    )
    if point is None or not point.by_benchmark:
        return []
    rows = [
        [
            b,
            str(v["items"]),
            _pct(v["accuracy"]),
            _pct(v["reference_accuracy"]),
            _pct(v["energy_fraction"]),
            " / ".join(f"{100 * v['shares'][m]:.0f}" for m in evaluation.models),
        ]
        for b, v in point.by_benchmark.items()
    ]
    return [
        "## `auto` (predictive, quality 0.95) per benchmark",
        "",
        "The calibrated default policy on the held-out items of each benchmark: the quality "
        "target holds for the mix, not for each benchmark.",
        "",
        _md_table(
            ["benchmark", "items", "accuracy", "reference", "energy vs reference", "shares"], rows
        ),
        "",
    ]


_STYLE: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {
        "predictive": ("tab:blue", "-"),
        "predictive:bar": ("tab:cyan", "-."),
        "cascade": ("tab:orange", "-"),
        "cascade:output": ("tab:green", "-"),
        "random": ("grey", "--"),
        "oracle": ("black", ":"),
    }
)


def plot(evaluation: Evaluation, path: Path) -> Path:
    """Accuracy against spend (fraction of the reference's), energy and cost side by side."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    from smallfirst.routing.metrics import frontier

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=120)
    for ax, axis in zip(axes, AXES, strict=True):
        drawn = False
        for c in evaluation.curves:
            xs = c.fractions[axis]
            if xs is None:
                continue
            drawn = True
            if c.kind == "model":
                ax.scatter(xs, 100 * c.accuracy, s=45, zorder=3, color="dimgray", marker="s")
                ax.annotate(
                    c.name,
                    (float(xs[0]), 100 * float(c.accuracy[0])),
                    textcoords="offset points",
                    xytext=(5, -12),
                    fontsize=7,
                )
                continue
            color, style = _STYLE.get(c.name, ("tab:purple", "-"))
            fx, fy = frontier(xs, c.accuracy)
            if fx[-1] < 1.0:  # the curve holds its best accuracy for any larger budget
                fx, fy = np.append(fx, 1.0), np.append(fy, fy[-1])
            ax.plot(fx, 100 * fy, linestyle=style, color=color, label=c.name)
        ax.set_xlabel(f"{axis} as a fraction of the reference model's")
        ax.set_ylabel("accuracy, % of held-out items")
        ax.set_title(f"{axis} axis" if drawn else f"{axis} axis (no data)")
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Routing: quality against spend (held-out items)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
