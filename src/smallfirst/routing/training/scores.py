"""Each tuned strategy's acceptance scores on a whole table of evaluation results.

A tuned router routes with one threshold over acceptance scores (n, m - 1)
(:func:`smallfirst.routing.strategies.choose`); these are the scores
:func:`~.sweep.sweep` calibrates and evaluates. They are computed from the same pieces the
strategies' ``decide`` uses on one request (:meth:`PredictiveRouter.acceptance` and
``spend``, the cascade's scorers, :func:`~smallfirst.routing.strategies.uniform_draw`), so
an offline curve says what the server will do. For the cascade's output signal the answers
are the table's stored ones.

This module scores; it fits nothing and chooses no threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

import numpy as np

from smallfirst.errors import RoutingError
from smallfirst.routing.base import Candidate
from smallfirst.routing.features import N_OUTPUT_FEATURES, FloatArray, output_features
from smallfirst.routing.predictors import LogisticModel, SpendModel
from smallfirst.routing.strategies import (
    CascadeRouter,
    PredictiveRouter,
    RandomRouter,
    uniform_draw,
)
from smallfirst.routing.training.table import Table

__all__ = [
    "CUMULATIVE",
    "TUNED",
    "cascade_scores",
    "output_matrix",
    "predictive_probabilities",
    "predictive_scores",
    "random_scores",
    "strategy_scores",
]

# Strategies that have a calibrated threshold; cascade pays for every attempt.
TUNED: Final[tuple[str, ...]] = ("predictive", "predictive:bar", "cascade", "cascade:output")
CUMULATIVE: Final[Mapping[str, bool]] = MappingProxyType(
    {
        "predictive": False,
        "predictive:bar": False,
        "cascade": True,
        "cascade:output": True,
    }
)


def output_matrix(table: Table, column: int) -> FloatArray:
    """:func:`output_features` of model ``column``'s answers, one row per item."""
    out = np.zeros((len(table), N_OUTPUT_FEATURES), dtype=np.float64)
    for i, row in enumerate(table.outputs):
        out[i] = output_features(row[column])
    return out


def predictive_probabilities(models: Mapping[str, LogisticModel], table: Table) -> FloatArray:
    """P(correct) of every table model on every row, shape (n, m)."""
    missing = [m for m in table.models if m not in models]
    if missing:
        raise RoutingError(f"predictive router has no model for {', '.join(missing)}")
    return np.stack([models[m].predict(table.features) for m in table.models], axis=1)


def predictive_scores(
    router: PredictiveRouter, table: Table, candidates: Sequence[Candidate]
) -> FloatArray:
    """``router``'s acceptance scores on ``table``, whose models must be ``candidates`` in
    order."""
    if tuple(c.name for c in candidates) != table.models:
        raise RoutingError("the table's models must be the candidates, in order")
    return router.acceptance(
        predictive_probabilities(router.models, table), router.spend(table.features, candidates)
    )


def cascade_scores(router: CascadeRouter, table: Table) -> FloatArray:
    """Each rung's confidence in its stored answer, (n, m - 1)."""
    n, m = table.correct.shape
    scores = np.empty((n, m - 1), dtype=np.float64)
    for j, name in enumerate(table.models[:-1]):
        scorer = router.models.get(name)
        if scorer is None:
            raise RoutingError(f"cascade router has no scorer for {name}")
        x = table.features
        if router.signal == "output":
            x = np.hstack([x, output_matrix(table, j)])
        scores[:, j] = scorer.predict(x)
    return scores


def random_scores(router: RandomRouter, table: Table) -> FloatArray:
    """The random router's draws as scores: at threshold ``p`` a draw below ``p`` goes to
    the reference, any other to the cheapest model, as ``decide`` does."""
    n, m = table.correct.shape
    scores = np.full((n, m - 1), -np.inf)
    if m > 1:
        scores[:, 0] = [uniform_draw(router.seed, h) for h in table.prompt_hashes]
    return scores


def strategy_scores(
    strategy: str,
    predictive: Mapping[str, LogisticModel],
    verifiers: Mapping[str, LogisticModel],
    table: Table,
    candidates: Sequence[Candidate],
    spend: Mapping[str, SpendModel] | None = None,
) -> FloatArray:
    """Acceptance scores (n, m - 1) of a TUNED strategy on ``table``.

    ``candidates`` are the table's models with their spend per item, and ``spend`` the
    per-prompt energy models: the utility rule weighs P(correct) against spend, so
    calibration and serving must use the same figures.
    """
    if strategy == "predictive":
        router = PredictiveRouter(
            predictive,
            0.0,
            spend_models=spend,
            spend_scale_j=candidates[-1].energy_j_per_item if candidates else None,
        )
        return predictive_scores(router, table, candidates)
    if strategy in ("predictive:bar", "cascade"):
        # the cascade's prompt signal is the predictive P(correct) of the model that answered
        return predictive_scores(PredictiveRouter(predictive, 0.0, rule="bar"), table, candidates)
    if strategy == "cascade:output":
        return cascade_scores(CascadeRouter(verifiers, 0.0, signal="output"), table)
    raise RoutingError(f"no scores for strategy {strategy!r}; tuned ones: {', '.join(TUNED)}")
