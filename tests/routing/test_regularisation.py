"""Choosing the L2 penalties out-of-fold on the training split."""

from __future__ import annotations

import dataclasses

import numpy as np

from smallfirst.routing.artifact import RouterArtifact
from smallfirst.routing.training.regularisation import L2_GRID, SPEND_L2_GRID, choose_l2
from smallfirst.routing.training.table import Table


def test_the_choice_is_the_grid_value_with_the_lowest_loss(table: Table) -> None:
    choice = choose_l2(table, folds=3, seed=0, iterations=100)
    assert set(choice.log_loss) == set(L2_GRID) and set(choice.spend_mse) == set(SPEND_L2_GRID)
    assert choice.log_loss[choice.l2] == min(choice.log_loss.values())
    assert choice.spend_l2 is not None
    assert choice.spend_mse[choice.spend_l2] == min(choice.spend_mse.values())
    # the synthetic labels depend on the prompt: some fitting beats the strongest penalty
    assert choice.l2 < max(L2_GRID)


def test_labels_that_are_noise_get_the_strongest_penalty(table: Table) -> None:
    rng = np.random.default_rng(1)
    noise = dataclasses.replace(table, correct=rng.random(table.correct.shape) < 0.5)
    choice = choose_l2(noise, folds=3, seed=0, iterations=100, spend_grid=())
    assert choice.l2 == max(L2_GRID)
    assert choice.spend_l2 is None and choice.spend_mse == {}


def test_train_records_the_choice(artifact: RouterArtifact) -> None:
    training = artifact.training
    selection = training["l2_selection"]
    assert training["l2"] == selection["l2"] in L2_GRID
    assert training["spend_l2"] == selection["spend_l2"] in SPEND_L2_GRID
    assert artifact.predictive[artifact.candidates[0].name].l2 == training["l2"]
    assert RouterArtifact.from_json(artifact.to_json()).training == training
