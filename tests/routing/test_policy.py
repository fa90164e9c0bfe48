"""Policy parsing, and calibration: targets met on the data, and monotone in the target."""

from __future__ import annotations

import numpy as np
import pytest

from smallfirst.routing.artifact import RouterArtifact
from smallfirst.routing.policy import (
    BUDGET_GRID,
    DEFAULT_POLICY,
    QUALITY_GRID,
    Policy,
    PolicyError,
    Sweep,
    calibrate,
    calibration_grid,
    parse_policy,
)
from smallfirst.routing.strategies import choose
from smallfirst.routing.training.scores import TUNED, strategy_scores
from smallfirst.routing.training.sweep import sweep
from smallfirst.routing.training.table import Table


@pytest.mark.fast
@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("auto", DEFAULT_POLICY),
        ("auto:quality=0.95", Policy("quality", 0.95)),
        ("auto:quality=1", Policy("quality", 1.0)),
        ("auto:energy=0.3", Policy("energy", 0.3)),
        ("auto:cost=.5", Policy("cost", 0.5)),
        ("  auto:energy=1e-1 ", Policy("energy", 0.1)),
    ],
)
def test_parse_valid(text: str, policy: Policy) -> None:
    assert parse_policy(text) == policy
    assert parse_policy(str(policy)) == policy


@pytest.mark.fast
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid routing policy"),
        ("Auto", "invalid routing policy"),
        ("auto:", "invalid routing policy"),
        ("auto:quality", "invalid routing policy"),
        ("auto:quality=", "is not a number"),
        ("auto:quality=high", "is not a number"),
        ("auto:quality=nan", "must be in (0, 1]"),
        ("auto:quality=0", "must be in (0, 1]"),
        ("auto:quality=1.2", "must be in (0, 1]"),
        ("auto:energy=-0.1", "must be in (0, 1]"),
        ("auto:speed=0.5", "unknown target 'speed'"),
        ("auto:quality=0.9=1", "invalid routing policy"),
        ("gpt-4o", "invalid routing policy"),
    ],
)
def test_parse_invalid(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace("]", r"\]")):
        parse_policy(text)


def random_curve(
    rng: np.random.Generator, n: int = 200, m: int = 3, benchmarks: int | None = None
) -> tuple[Table, Sweep, np.ndarray]:  # type: ignore[type-arg]
    """A random table (correctness unrelated to cost, spend not monotone) of one to three
    benchmarks, and its sweep."""
    correct = rng.random((n, m)) < rng.random(m)
    energy = rng.random((n, m)) * np.sort(rng.random(m) * 100)
    k = int(rng.integers(1, 4)) if benchmarks is None else benchmarks
    table = Table(
        models=tuple(f"model-{j}" for j in range(m)),
        benchmarks=tuple(f"b{i % k}" for i in range(n)),
        item_ids=tuple(str(i) for i in range(n)),
        prompt_hashes=tuple(str(i) for i in range(n)),
        features=np.zeros((n, 1)),
        correct=correct,
        energy_j=energy,
        cost_usd=energy * rng.random((n, m)),
        outputs=(("",) * m,) * n,
        run_ids=("r",),
    )
    scores = rng.random((n, m - 1))
    return table, sweep(scores, table, cumulative=bool(rng.integers(2))), scores


def assert_monotone(curve: Sweep, scores: np.ndarray, kind: str, targets: np.ndarray) -> None:  # type: ignore[type-arg]
    previous_threshold = -np.inf
    previous_choice = np.zeros(len(scores), dtype=int)
    for target in np.sort(targets):
        cal = calibrate(curve, Policy(kind, float(target)))  # type: ignore[arg-type]
        assert cal.threshold >= previous_threshold
        chosen = choose(scores, cal.threshold)
        # no item is ever sent to a cheaper model by a stricter (or richer) target
        assert np.all(chosen >= previous_choice)
        previous_threshold, previous_choice = cal.threshold, chosen


def test_quality_calibration_is_monotone_on_the_fitted_router(
    artifact: RouterArtifact, table: Table
) -> None:
    for strategy in TUNED:
        curve = artifact.calibration[strategy]
        scores = strategy_scores(
            strategy, artifact.predictive, artifact.verifiers, table, artifact.candidates
        )
        assert_monotone(curve, scores, "quality", np.asarray(QUALITY_GRID))
        assert_monotone(curve, scores, "energy", np.asarray(BUDGET_GRID))


def test_calibration_is_monotone_property() -> None:
    """Many random tables (accuracy not monotone in the threshold, spend not either) and
    many random targets: thresholds and every item's model never move down."""
    rng = np.random.default_rng(11)
    for _ in range(200):
        m = int(rng.integers(2, 5))
        _, curve, scores = random_curve(rng, n=int(rng.integers(1, 120)), m=m)
        for kind in ("quality", "energy", "cost"):
            targets = rng.random(80) * 1.0 + 1e-6
            assert_monotone(curve, scores, kind, np.minimum(targets, 1.0))


@pytest.mark.fast
def test_quality_target_is_met_and_cheapest() -> None:
    rng = np.random.default_rng(2)
    for _ in range(30):
        _, curve, _ = random_curve(rng, benchmarks=1)
        for q in (0.5, 0.8, 0.95, 1.0):
            cal = calibrate(curve, Policy("quality", q))
            assert cal.feasible
            assert cal.accuracy >= q * curve.reference_accuracy - 1e-12
            # no lower threshold meets it
            assert np.all(curve.accuracy[: cal.index] < q * curve.reference_accuracy)


def routed_ratio_per_benchmark(table: Table, chosen: np.ndarray) -> dict[str, float]:  # type: ignore[type-arg]
    out = {}
    for name in set(table.benchmarks):
        rows = np.flatnonzero(np.asarray(table.benchmarks) == name)
        reference = table.correct[rows, -1].sum()
        if reference:
            out[name] = table.correct[rows, chosen[rows]].sum() / reference
    return out


def test_quality_target_is_met_on_every_benchmark() -> None:
    """Calibrated per benchmark: each benchmark keeps Q of its own reference accuracy, and
    no lower threshold does (checked by routing the table, not by reading the sweep)."""
    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(30):
        table, curve, scores = random_curve(rng, benchmarks=3)
        if curve.worst_benchmark_ratio is None:
            # the reference got nothing right on two of the benchmarks: no ratio to keep
            assert len(routed_ratio_per_benchmark(table, choose(scores, 2.0))) < 2
            continue
        checked += 1
        for q in (0.5, 0.8, 0.95):
            cal = calibrate(curve, Policy("quality", q))
            ratios = routed_ratio_per_benchmark(table, choose(scores, cal.threshold))
            assert min(ratios.values()) >= q - 1e-12
            assert cal.worst_benchmark_ratio == pytest.approx(min(ratios.values()))
            for lower in curve.thresholds[: cal.index]:
                chosen = choose(scores, lower)
                mix = table.correct[np.arange(len(chosen)), chosen].mean()
                worst = min(routed_ratio_per_benchmark(table, chosen).values())
                assert worst < q or mix < q * curve.reference_accuracy
    assert checked >= 20


@pytest.mark.fast
def test_one_benchmark_or_an_old_sweep_is_calibrated_on_the_mix() -> None:
    rng = np.random.default_rng(6)
    _, one, _ = random_curve(rng, benchmarks=1)
    assert one.worst_benchmark_ratio is None
    _, curve, _ = random_curve(rng, benchmarks=3)
    data = curve.to_json()
    del data["worst_benchmark_ratio"]  # as written before the field existed
    old = Sweep.from_json(data)
    assert old.worst_benchmark_ratio is None
    cal = calibrate(old, Policy("quality", 0.9))
    assert cal.accuracy >= 0.9 * old.reference_accuracy - 1e-12
    assert np.all(old.accuracy[: cal.index] < 0.9 * old.reference_accuracy)
    # and the new field round-trips
    again = Sweep.from_json(curve.to_json())
    assert again.worst_benchmark_ratio is not None
    assert np.array_equal(again.worst_benchmark_ratio, curve.worst_benchmark_ratio)  # type: ignore[arg-type]


@pytest.mark.fast
def test_budget_is_respected_and_most_accurate() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        _, curve, _ = random_curve(rng)
        spend = curve.energy_fraction
        assert spend is not None
        for budget in (0.2, 0.5, 0.9, 1.0):
            cal = calibrate(curve, Policy("energy", budget))
            if not cal.feasible:
                assert spend[0] > budget and cal.index == 0
                continue
            prefix = np.maximum.accumulate(spend) <= budget + 1e-12
            assert cal.energy_fraction is not None and cal.energy_fraction <= budget + 1e-12
            assert cal.accuracy == curve.accuracy[prefix].max()


@pytest.mark.fast
def test_quality_one_sends_everything_to_the_reference_at_worst() -> None:
    rng = np.random.default_rng(4)
    table, curve, _ = random_curve(rng)
    cal = calibrate(curve, Policy("quality", 1.0))
    assert cal.accuracy >= curve.reference_accuracy - 1e-12
    # the last point of every sweep is the all-reference routing
    assert curve.shares[-1, -1] == 1.0
    assert curve.accuracy[-1] == pytest.approx(table.correct[:, -1].mean())


def test_grid_covers_the_targets(artifact: RouterArtifact) -> None:
    grid = calibration_grid(artifact.calibration["predictive"])
    kinds = [c.policy.kind for c in grid]
    assert kinds.count("quality") == len(QUALITY_GRID) == 51
    assert kinds.count("energy") == kinds.count("cost") == len(BUDGET_GRID) == 100
