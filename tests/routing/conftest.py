"""A router fitted once per session on synthetic results (see :mod:`tests.routing.synthetic`)."""

from __future__ import annotations

import pytest

from smallfirst.routing.artifact import RouterArtifact
from smallfirst.routing.training.evaluation import Evaluation
from smallfirst.routing.training.splits import split
from smallfirst.routing.training.table import Table
from smallfirst.routing.training.train import train
from tests.routing.synthetic import synthetic_table

TIERS = {"tiny-xs": "XS", "small-s": "S", "medium-m": "M"}


@pytest.fixture(scope="session")
def table() -> Table:
    return synthetic_table(600, seed=0)


@pytest.fixture(scope="session")
def trained(table: Table) -> tuple[RouterArtifact, Evaluation]:
    return train(table, tiers=TIERS, seed=0, folds=3, iterations=200)


@pytest.fixture(scope="session")
def artifact(trained: tuple[RouterArtifact, Evaluation]) -> RouterArtifact:
    return trained[0]


@pytest.fixture(scope="session")
def evaluation(trained: tuple[RouterArtifact, Evaluation]) -> Evaluation:
    return trained[1]


@pytest.fixture(scope="session")
def heldout(table: Table) -> Table:
    return table.take(split(table, 0.25, 0).heldout)
