"""Present a router evaluation: the terminal tables' rows and report.md.

Reads an :class:`~.evaluation.Evaluation` (and, for report.md, the artifact it judged) and
formats it; the plot is :mod:`.plot`'s. It computes no metric of its own beyond reading
curves (:func:`least_energy_at`) and fits nothing; it judges nothing against goals either
(figures, not verdicts: targets belong to whoever sets them).
"""

from __future__ import annotations

import math
from typing import Final

from smallfirst.routing.artifact import RouterArtifact
from smallfirst.routing.policy import AXES, DEFAULT_POLICY
from smallfirst.routing.registry import DEFAULT_STRATEGY
from smallfirst.routing.training.evaluation import Curve, Evaluation, auto_point

__all__ = [
    "CALIBRATED_HEADERS",
    "CEILING_HEADERS",
    "METRIC_HEADERS",
    "calibrated_rows",
    "ceiling_rows",
    "discrimination_headers",
    "discrimination_rows",
    "least_energy_at",
    "markdown",
    "metric_rows",
    "model_rows",
    "summary_lines",
]


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
CEILING_HEADERS: Final = (
    "ceiling",
    "rule",
    "accuracy",
    "vs reference",
    "energy",
    "cost",
    "shares",
    "auto captures",
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


def summary_lines(evaluation: Evaluation) -> list[str]:
    """The energy axis in a few lines: the best APGR, each strategy at the default policy's
    quality, and how much of each ceiling's saving ``auto`` captures."""
    reference = evaluation.model_accuracy[evaluation.models[-1]]
    quality = DEFAULT_POLICY.target
    bar = quality * reference
    routers = [c for c in evaluation.curves if c.kind == "router"]
    scored = [
        (m.apgr, c)
        for c in routers
        if (m := c.metrics["energy"]) is not None and m.apgr is not None
    ]
    if not scored:
        return ["- no energy figures on these items"]
    apgr, best = max(scored, key=lambda t: t[0])
    oracle = evaluation.curve("oracle")
    oracle_m = oracle.metrics["energy"]
    lines = [
        f"- APGR (energy) of the best strategy, `{best.name}`: {apgr:.3f} "
        f"(random 0.500, oracle {_num(oracle_m.apgr if oracle_m else None)})",
    ]
    for c in routers:
        least = least_energy_at(c, bar)
        calibrated = next(
            (
                p
                for p in evaluation.calibrated
                if p.strategy == c.name and p.policy == str(DEFAULT_POLICY)
            ),
            None,
        )
        said = (
            "no threshold reaches it"
            if least is None
            else f"{_pct(least)} of the reference's energy in hindsight"
        )
        if calibrated is not None:
            said += (
                f"; calibrated {DEFAULT_POLICY}: {_pct(calibrated.quality_ratio)}"
                f" of the reference's accuracy at {_pct(calibrated.energy_fraction)} energy"
            )
        lines.append(f"- `{c.name}` at >= {quality:.0%} of the reference: {said}")
    lines.append(
        f"- oracle at >= {quality:.0%}: {_pct(least_energy_at(oracle, bar))} of the "
        "reference's energy"
    )
    return lines + _captured_lines(evaluation)


def _captured_lines(evaluation: Evaluation) -> list[str]:
    auto = auto_point(evaluation.calibrated)
    if auto is None or auto.energy_fraction is None:
        return []
    shares = [
        f"{_pct(c.captured)} of `{c.name}`'s (at {_pct(c.energy_fraction)})"
        for c in evaluation.ceilings
        if c.captured is not None
    ]
    if not shares:
        return []
    return [
        f"- `auto` ({DEFAULT_STRATEGY}, {DEFAULT_POLICY}) spends {_pct(auto.energy_fraction)} "
        f"of the reference's energy: it captures {', '.join(shares)} achievable saving"
    ]


def ceiling_rows(evaluation: Evaluation) -> list[list[str]]:
    return [
        [
            c.name,
            c.rule,
            _pct(c.accuracy),
            _pct(c.quality_ratio),
            _pct(c.energy_fraction),
            _pct(c.cost_fraction),
            " / ".join(f"{100 * s:.0f}" for s in c.shares.values()),
            _pct(c.captured),
        ]
        for c in evaluation.ceilings
    ]


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
        "## Summary (energy axis)",
        "",
        *summary_lines(evaluation),
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
        "reference (APGR 0.5); formulas in `smallfirst.routing.training.metrics`.",
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
        *_ceilings(evaluation),
        *_default_by_benchmark(evaluation),
        *_discrimination(evaluation),
    ]
    if plot_name:
        parts += [f"![quality vs spend]({plot_name})", ""]
    return "\n".join(parts)


def _ceilings(evaluation: Evaluation) -> list[str]:
    """The section on the three oracles and the share of their saving ``auto`` captures."""
    if not evaluation.ceilings:
        return []
    return [
        "## Ceilings",
        "",
        "Routing in hindsight, from every model's stored answer to each held-out item; "
        "solved items (some model right) go to the cheapest right model in all three. "
        "`oracle` sends unsolved items to the cheapest model, a saving no router can "
        "foresee; `oracle-as-reference` keeps exactly the reference's right answers (its "
        "accuracy is the reference's); `oracle-unsolved-to-reference` sends unsolved items "
        f"to the reference. Auto captures: (1 - energy of `auto`, {DEFAULT_STRATEGY} at "
        f"{DEFAULT_POLICY}) / (1 - energy of the ceiling), the share of the achievable "
        "energy saving it realises.",
        "",
        _md_table(list(CEILING_HEADERS), ceiling_rows(evaluation)),
        "",
    ]


def _default_by_benchmark(evaluation: Evaluation) -> list[str]:
    """The section on what the server's default policy does to each benchmark."""
    point = auto_point(evaluation.calibrated)
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
        f"## `auto` ({DEFAULT_STRATEGY}, {DEFAULT_POLICY.kind} {DEFAULT_POLICY.target:g}) "
        "per benchmark",
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
