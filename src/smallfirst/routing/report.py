"""Present a router evaluation: the terminal tables' rows, report.md and the quality-spend plot.

Reads an :class:`~smallfirst.routing.evaluation.Evaluation` (and, for report.md, the
artifact it judged) and formats it; the target figures of the routing issue are checked
here (:func:`target_lines`). It computes no metric of its own beyond reading curves
(:func:`least_energy_at`) and fits nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

import numpy as np

from smallfirst.routing.artifact import RouterArtifact
from smallfirst.routing.data import AXES
from smallfirst.routing.evaluation import Curve, Evaluation


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
        *_discrimination(evaluation),
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
        "The calibrated default policy on the held-out items of each benchmark. The target "
        "is calibrated to hold for every benchmark of the training split; here it is "
        "measured on items the router has not seen.",
        "",
        _md_table(
            ["benchmark", "items", "accuracy", "reference", "energy vs reference", "shares"], rows
        ),
        "",
    ]


def discrimination_headers(evaluation: Evaluation) -> list[str]:
    return [
        "benchmark",
        *(m for m in evaluation.models if m in evaluation.discrimination.get("all", {})),
    ]


def discrimination_rows(evaluation: Evaluation) -> list[list[str]]:
    """Per benchmark ("all" first), each model's ROC AUC of P(correct)."""
    models = discrimination_headers(evaluation)[1:]
    return [
        [name, *(_num(aucs.get(m), 2) for m in models)]
        for name, aucs in evaluation.discrimination.items()
    ]


def _discrimination(evaluation: Evaluation) -> list[str]:
    """The section on how well P(correct) tells a model's right answers from its wrong ones."""
    if not evaluation.discrimination:
        return []
    return [
        "## How well the router tells easy items from hard ones",
        "",
        "ROC AUC of each model's predicted P(correct) on the held-out items, over all of "
        "them and within each benchmark (0.5: no better than chance; ties count half). "
        "Within a benchmark near 0.5, the router can only route that benchmark as a whole, "
        "so a per-benchmark quality target leaves little to save there.",
        "",
        _md_table(discrimination_headers(evaluation), discrimination_rows(evaluation)),
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
