"""APGR, CPT and AIQ on hand-computed cases, and the baselines' order on structured data."""

from __future__ import annotations

import numpy as np
import pytest

from smallfirst.routing.training.evaluation import Evaluation
from smallfirst.routing.training.metrics import (
    Point,
    aiq,
    apgr,
    cpt,
    frontier,
    integrate,
    oracle_curve,
    random_curve,
    roc_auc,
    upper_hull,
)
from smallfirst.routing.training.oracle import oracle_choice
from smallfirst.routing.training.sweep import sweep
from smallfirst.routing.training.table import Table


def tiny_table() -> Table:
    """4 items, 2 models. Weak right on item 0 only; strong on 0, 1, 2. 1 J vs 4 J."""
    correct = np.asarray([[1, 1], [0, 1], [0, 1], [0, 0]], dtype=bool)
    energy = np.asarray([[1.0, 4.0]] * 4)
    return Table(
        models=("weak", "strong"),
        benchmarks=("b",) * 4,
        item_ids=("0", "1", "2", "3"),
        prompt_hashes=("h0", "h1", "h2", "h3"),
        features=np.zeros((4, 1)),
        correct=correct,
        energy_j=energy,
        cost_usd=energy * 2,
        outputs=(("", ""),) * 4,
        run_ids=("r",),
    )


# The router escalates item 1, then 2, then 3, then 0: the gainful items first.
SCORES = np.asarray([[0.4], [0.1], [0.2], [0.3]])
WEAK, STRONG = Point(0.25, 0.25), Point(1.0, 0.75)


@pytest.mark.fast
def test_the_tiny_sweep() -> None:
    curve = sweep(SCORES, tiny_table())
    assert curve.energy_fraction is not None and curve.cost_fraction is not None
    assert curve.energy_fraction.tolist() == [0.25, 7 / 16, 10 / 16, 13 / 16, 1.0]
    assert curve.cost_fraction.tolist() == curve.energy_fraction.tolist()
    assert curve.accuracy.tolist() == [0.25, 0.5, 0.75, 0.75, 0.75]
    assert curve.shares[:, 1].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve.reference_accuracy == 0.75


@pytest.mark.fast
def test_exact_values_on_the_tiny_example() -> None:
    curve = sweep(SCORES, tiny_table())
    x, y = curve.energy_fraction, curve.accuracy
    assert x is not None
    # frontier (0.25, .25) (0.4375, .5) (0.625, .75), flat to 1:
    # area 0.1875 * 0.25 + 0.1875 * 0.75 + 0.375 * 1 = 0.5625 over a span of 0.75
    assert apgr(x, y, WEAK, STRONG) == pytest.approx(0.75)
    assert cpt(x, y, WEAK, STRONG, 0.5) == pytest.approx(0.4375)
    assert cpt(x, y, WEAK, STRONG, 0.8) == pytest.approx(0.4375 + 0.6 * 0.1875)
    # the hull drops the collinear middle point: area 0.375 * 0.5 + 0.375 * 0.75
    assert aiq(x, y, 0.25, 1.0) == pytest.approx(0.625)
    rx, ry = random_curve(WEAK, STRONG)
    assert apgr(rx, ry, WEAK, STRONG) == pytest.approx(0.5)
    assert aiq(rx, ry, 0.25, 1.0) == pytest.approx(0.5)
    assert cpt(rx, ry, WEAK, STRONG, 0.5) == pytest.approx(0.625)
    assert cpt(rx, ry, WEAK, STRONG, 0.8) == pytest.approx(0.85)
    # the weak model alone never recovers anything
    assert cpt(np.asarray([0.25]), np.asarray([0.25]), WEAK, STRONG, 0.5) is None
    assert apgr(x, y, STRONG, WEAK) is None  # no gap to recover


@pytest.mark.fast
def test_the_oracle_on_the_tiny_example() -> None:
    table = tiny_table()
    choice = oracle_choice(table.correct)
    assert choice.tolist() == [0, 1, 1, 0]
    x, y = oracle_curve(table.correct, table.energy_j, choice)
    assert x.tolist() == [0.25, 7 / 16, 10 / 16]
    assert y.tolist() == [0.25, 0.5, 0.75]
    assert apgr(x, y, WEAK, STRONG) == pytest.approx(0.75)


@pytest.mark.fast
def test_curve_helpers() -> None:
    # unsorted, dominated and duplicate points
    xs, ys = frontier(np.asarray([0.5, 0.1, 0.3, 0.3, 0.9]), np.asarray([0.6, 0.2, 0.1, 0.5, 0.55]))
    assert xs.tolist() == [0.1, 0.3, 0.5] and ys.tolist() == [0.2, 0.5, 0.6]
    hx, _ = upper_hull(np.asarray([0.0, 0.5, 0.6, 1.0]), np.asarray([0.0, 0.9, 0.91, 1.0]))
    assert hx.tolist() == [0.0, 0.5, 1.0]
    assert integrate(np.asarray([0.0, 1.0]), np.asarray([0.0, 1.0]), 0.0, 2.0) == pytest.approx(1.5)
    assert integrate(np.asarray([0.5]), np.asarray([0.3]), 0.0, 1.0) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        frontier(np.asarray([np.nan]), np.asarray([0.5]))


def test_oracle_beats_predictive_beats_random_on_structured_data(evaluation: Evaluation) -> None:
    for axis in ("energy", "cost"):
        metrics = {
            c.name: c.metrics[axis] for c in evaluation.curves if c.metrics[axis] is not None
        }
        apgrs = {name: m.apgr for name, m in metrics.items() if m is not None}
        assert apgrs["random"] == pytest.approx(0.5)
        assert apgrs["oracle"] >= apgrs["predictive"] >= apgrs["random"] + 0.1
        assert apgrs["predictive"] > apgrs["predictive:bar"]
        aiqs = {name: m.aiq for name, m in metrics.items() if m is not None}
        assert aiqs["oracle"] >= aiqs["predictive"] >= aiqs["random"]
        cpt50 = {name: m.cpt50 for name, m in metrics.items() if m is not None}
        assert cpt50["oracle"] <= cpt50["predictive"] <= cpt50["random"]
        # a cascade pays for every attempt: its top threshold costs more than the reference
        cascade = evaluation.curve("cascade").fractions[axis]
        assert cascade is not None and cascade.max() > 1.0


def test_calibrated_points_break_down_by_benchmark(evaluation: Evaluation) -> None:
    for point in evaluation.calibrated:
        parts = point.by_benchmark
        assert set(parts) == set(evaluation.items_per_benchmark)
        n = sum(v["items"] for v in parts.values())
        assert n == evaluation.n_items
        # the parts add up to the whole
        assert sum(v["items"] * v["accuracy"] for v in parts.values()) / n == pytest.approx(
            point.accuracy
        )
        for v in parts.values():
            assert sum(v["shares"].values()) == pytest.approx(1.0)
    reference = evaluation.model_accuracy[evaluation.models[-1]]
    parts = evaluation.calibrated[0].by_benchmark.values()
    assert sum(v["items"] * v["reference_accuracy"] for v in parts) / evaluation.n_items == (
        pytest.approx(reference)
    )


@pytest.mark.fast
def test_roc_auc_matches_counting_pairs() -> None:
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([False, False, True, True])) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([False, False, True, True])) == 0.0
    assert roc_auc(np.full(4, 0.3), np.array([False, True, False, True])) == 0.5
    assert roc_auc(np.array([0.1, 0.2]), np.array([True, True])) is None
    rng = np.random.default_rng(9)
    for _ in range(50):
        n = int(rng.integers(2, 40))
        scores = rng.integers(0, 5, n).astype(float)  # many ties
        labels = rng.random(n) < 0.5
        pos, neg = scores[labels], scores[~labels]
        if not len(pos) or not len(neg):
            assert roc_auc(scores, labels) is None
            continue
        pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
        assert roc_auc(scores, labels) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_discrimination_is_reported_per_benchmark(evaluation: Evaluation) -> None:
    assert set(evaluation.discrimination) == {"all", *evaluation.items_per_benchmark}
    for aucs in evaluation.discrimination.values():
        assert set(aucs) == set(evaluation.models)
        assert all(v is None or 0.0 <= v <= 1.0 for v in aucs.values())
    # the synthetic data's difficulty is in the features: the router sees it
    overall = evaluation.discrimination["all"]
    assert max(v for v in overall.values() if v is not None) > 0.7
    assert evaluation.to_json()["discrimination_auc"] == evaluation.discrimination
