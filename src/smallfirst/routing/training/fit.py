"""Fit the predictive router and the cascade's scorers, and their calibration sweeps.

:func:`fit` trains, on a training table:

- per model, P(correct | prompt features): the predictive router, and the cascade's
  "prompt" signal;
- per model except the reference, P(correct | prompt and answer features): the cascade's
  "output" signal (its answer verifier).

Thresholds must be calibrated on scores the models did not see in training (a model is
over-confident on its own training items), so calibration uses *out-of-fold* scores: the
training table is cut into ``folds`` prompt-grouped, benchmark-stratified folds
(:func:`~.splits.group_folds`), each fold is scored by models fitted on the
others, and the thresholds are swept over those scores. The models kept are then refitted on
the whole training table. This costs ``folds + 1`` fits per model; each is a few hundred
gradient steps in numpy.

This module fits and sweeps; it does not choose policies' thresholds
(:mod:`smallfirst.routing.policy`) or write artifacts (:mod:`smallfirst.routing.artifact`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from smallfirst.errors import RoutingError
from smallfirst.routing.features import FloatArray
from smallfirst.routing.policy import Sweep
from smallfirst.routing.predictors import LogisticModel, SpendModel
from smallfirst.routing.training.regression import (
    DEFAULT_ITERATIONS,
    DEFAULT_L2,
    DEFAULT_SPEND_L2,
    fit_logistic,
    fit_spend,
)
from smallfirst.routing.training.scores import CUMULATIVE, TUNED, output_matrix, strategy_scores
from smallfirst.routing.training.splits import group_folds
from smallfirst.routing.training.sweep import sweep
from smallfirst.routing.training.table import Table

__all__ = [
    "DEFAULT_FOLDS",
    "Fitted",
    "fit",
    "fit_models",
    "fit_spend_models",
    "out_of_fold_scores",
]

log = logging.getLogger(__name__)

DEFAULT_FOLDS = 5

Models = dict[str, LogisticModel]


@dataclass(frozen=True, eq=False)
class Fitted:
    predictive: Models  # every model, on prompt features
    verifiers: Models  # every model but the reference, on prompt + answer features
    spend: Mapping[str, SpendModel]  # every model with energy figures, on prompt features
    calibration: dict[str, Sweep]  # per TUNED strategy, out-of-fold on the training table
    n_train: int
    folds: int


def fit_spend_models(table: Table, l2: float = DEFAULT_SPEND_L2) -> dict[str, SpendModel]:
    """Per-model energy regressions (:func:`~.regression.fit_spend`), for the models with
    energy figures."""
    out = {}
    for j, name in enumerate(table.models):
        model = fit_spend(table.features, table.energy_j[:, j], l2=l2)
        if model is not None:
            out[name] = model
    return out


def fit_models(
    table: Table, *, l2: float = DEFAULT_L2, iterations: int = DEFAULT_ITERATIONS
) -> tuple[Models, Models]:
    """The predictive models and the answer verifiers, fitted on all of ``table``."""
    predictive = {
        name: fit_logistic(table.features, table.correct[:, j], l2=l2, iterations=iterations)
        for j, name in enumerate(table.models)
    }
    verifiers = {}
    for j, name in enumerate(table.models[:-1]):
        x = np.hstack([table.features, output_matrix(table, j)])
        verifiers[name] = fit_logistic(x, table.correct[:, j], l2=l2, iterations=iterations)
    return predictive, verifiers


def out_of_fold_scores(
    table: Table,
    *,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    l2: float = DEFAULT_L2,
    spend_l2: float = DEFAULT_SPEND_L2,
    iterations: int = DEFAULT_ITERATIONS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, FloatArray]:
    """Each TUNED strategy's scores on every row, from models that never saw that row."""
    n, m = table.correct.shape
    # the whole training table's spend figures: what the artifact will serve with
    candidates = table.candidates()
    fold = group_folds(table, folds, seed)
    out = {s: np.full((n, m - 1), np.nan) for s in TUNED}
    for f in range(folds):
        held = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        if not len(held) or not len(train):
            continue
        if progress:
            progress(f"fold {f + 1}/{folds}")
        fold_table = table.take(train)
        predictive, verifiers = fit_models(fold_table, l2=l2, iterations=iterations)
        spend = fit_spend_models(fold_table, spend_l2)
        part = table.take(held)
        for s in TUNED:
            out[s][held] = strategy_scores(s, predictive, verifiers, part, candidates, spend)
    for s, scores in out.items():
        if np.isnan(scores).any():
            # only when a fold was empty (fewer prompt groups than folds): score those rows
            # with models that did see them rather than leave holes
            rows = np.flatnonzero(np.isnan(scores).any(axis=1))
            predictive, verifiers = fit_models(table, l2=l2, iterations=iterations)
            spend = fit_spend_models(table, spend_l2)
            scores[rows] = strategy_scores(
                s, predictive, verifiers, table.take(rows), candidates, spend
            )
            log.warning("%s: %d rows scored in-sample (too few prompt groups)", s, len(rows))
    return out


def fit(
    table: Table,
    *,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    l2: float = DEFAULT_L2,
    spend_l2: float = DEFAULT_SPEND_L2,
    iterations: int = DEFAULT_ITERATIONS,
    progress: Callable[[str], None] | None = None,
) -> Fitted:
    """Models on all of ``table`` and out-of-fold calibration sweeps (module docstring)."""
    if len(table.models) < 2:
        raise RoutingError("routing needs at least two models")
    oof = out_of_fold_scores(
        table,
        folds=folds,
        seed=seed,
        l2=l2,
        spend_l2=spend_l2,
        iterations=iterations,
        progress=progress,
    )
    calibration = {s: sweep(oof[s], table, cumulative=CUMULATIVE[s]) for s in TUNED}
    if progress:
        progress("final fit")
    predictive, verifiers = fit_models(table, l2=l2, iterations=iterations)
    return Fitted(
        predictive=predictive,
        verifiers=verifiers,
        spend=fit_spend_models(table, spend_l2),
        calibration=calibration,
        n_train=len(table),
        folds=folds,
    )
