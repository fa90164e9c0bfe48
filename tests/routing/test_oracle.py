"""The three oracles (ceilings) on a hand-computed case, and their invariants on held-out data."""

from __future__ import annotations

import numpy as np
import pytest

from smallfirst.routing.artifact import RouterArtifact
from smallfirst.routing.training.evaluation import Evaluation, auto_point
from smallfirst.routing.training.oracle import (
    ceilings,
    oracle_choice,
    same_as_reference_choice,
    unsolved_to_reference_choice,
)
from smallfirst.routing.training.table import Table


def three_model_table() -> Table:
    """5 items, models a (1 J), b (2 J) and the reference c (4 J). Item 0: all right; 1: b
    and c; 2: a only; 3: nobody; 4: c only."""
    correct = np.asarray(
        [[1, 1, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0], [0, 0, 1]],
        dtype=bool,
    )
    energy = np.asarray([[1.0, 2.0, 4.0]] * 5)
    return Table(
        models=("a", "b", "c"),
        benchmarks=("x",) * 5,
        item_ids=tuple(str(i) for i in range(5)),
        prompt_hashes=tuple(f"h{i}" for i in range(5)),
        features=np.zeros((5, 1)),
        correct=correct,
        energy_j=energy,
        cost_usd=energy * 3,
        outputs=(("", "", ""),) * 5,
        run_ids=("r",),
    )


def test_the_three_choices_by_hand() -> None:
    correct = three_model_table().correct
    assert oracle_choice(correct).tolist() == [0, 1, 0, 0, 2]
    assert same_as_reference_choice(correct).tolist() == [0, 1, 2, 2, 2]
    assert unsolved_to_reference_choice(correct).tolist() == [0, 1, 0, 2, 2]


def test_the_three_ceilings_by_hand() -> None:
    by_name = {c.name: c for c in ceilings(three_model_table(), router_energy_fraction=0.9)}
    oracle = by_name["oracle"]
    same = by_name["oracle-as-reference"]
    unsolved = by_name["oracle-unsolved-to-reference"]
    # energy: 9, 15 and 12 J of the reference's 20
    assert oracle.energy_fraction == pytest.approx(0.45)
    assert same.energy_fraction == pytest.approx(0.75)
    assert unsolved.energy_fraction == pytest.approx(0.6)
    assert same.cost_fraction == pytest.approx(0.75)  # cost is 3x energy here
    # accuracy: the reference is right on 3 of 5, some model on 4 of 5
    assert same.accuracy == pytest.approx(0.6) and same.quality_ratio == pytest.approx(1.0)
    assert oracle.accuracy == unsolved.accuracy == pytest.approx(0.8)
    assert same.shares == {"a": 0.2, "b": 0.2, "c": 0.6}
    # a router at 90% of the reference's energy saves 10 of the ceiling's 25, 40 or 55 points
    assert same.captured == pytest.approx(0.1 / 0.25)
    assert unsolved.captured == pytest.approx(0.1 / 0.4)
    assert oracle.captured == pytest.approx(0.1 / 0.55)
    assert all(c.captured is None for c in ceilings(three_model_table(), None))


def test_ceilings_on_held_out_items(
    evaluation: Evaluation, artifact: RouterArtifact, heldout: Table
) -> None:
    by_name = {c.name: c for c in evaluation.ceilings}
    assert list(by_name) == ["oracle", "oracle-as-reference", "oracle-unsolved-to-reference"]
    table = heldout.with_models([c.name for c in artifact.candidates])
    reference_accuracy = float(table.correct[:, -1].mean())
    same = by_name["oracle-as-reference"]
    assert same.accuracy == pytest.approx(reference_accuracy)  # exactly its items
    chosen = same_as_reference_choice(table.correct)
    right = table.correct[np.arange(len(table)), chosen]
    assert np.array_equal(right, table.correct[:, -1])
    energies = [by_name[n].energy_fraction for n in by_name]
    assert all(e is not None for e in energies)
    oracle_e, same_e, unsolved_e = (float(e) for e in energies if e is not None)
    assert oracle_e <= unsolved_e <= same_e <= 1.0
    auto = auto_point(evaluation.calibrated)
    assert auto is not None and auto.energy_fraction is not None
    assert same.captured == pytest.approx((1 - auto.energy_fraction) / (1 - same_e))
    assert "ceilings" in evaluation.to_json()
