"""Choose the router's L2 penalties out-of-fold, from the training table alone.

The predictive router's logistic models and its per-prompt spend regressions each have one
L2 penalty. :func:`choose_l2` tries each value of a small grid, fits on all folds but one
(the same prompt-grouped, benchmark-stratified folds as calibration,
:func:`~.splits.group_folds`), scores the fold left out, and keeps the value
with the lowest mean out-of-fold loss over the models:

- logistic models (predictive and the cascade's verifiers share the value): log-loss of
  P(correct), a proper scoring rule, so the chosen penalty is the one whose probabilities are
  best calibrated, which is what the utility rule and the thresholds consume;
- spend models: mean squared error of log joules.

The held-out split is never looked at, so ``router eval`` stays an honest estimate. Routing
metrics such as APGR are not used as the criterion: on a few hundred items they move by
several points between neighbouring penalties by chance, while the losses are smooth.

This module selects; it does not fit the final models (:mod:`.fit`) or write anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from smallfirst.errors import RoutingError
from smallfirst.routing.training.regression import (
    DEFAULT_ITERATIONS,
    fit_logistic,
    fit_spend,
    log_loss,
)
from smallfirst.routing.training.splits import group_folds
from smallfirst.routing.training.table import Table

__all__ = ["L2_GRID", "SPEND_L2_GRID", "Choice", "choose_l2"]

L2_GRID: Final[tuple[float, ...]] = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
SPEND_L2_GRID: Final[tuple[float, ...]] = (1.0, 10.0, 100.0, 1000.0, 10000.0)


@dataclass(frozen=True, slots=True)
class Choice:
    l2: float  # the logistic models' penalty
    spend_l2: float | None  # the spend models' penalty; None when no model has energy figures
    log_loss: dict[float, float]  # mean out-of-fold log-loss per grid value
    spend_mse: dict[float, float]  # mean out-of-fold squared error of log joules

    def to_json(self) -> dict[str, Any]:
        return {
            "l2": self.l2,
            "spend_l2": self.spend_l2,
            "oof_log_loss": {str(k): round(v, 5) for k, v in self.log_loss.items()},
            "oof_spend_mse_log_j": {str(k): round(v, 5) for k, v in self.spend_mse.items()},
        }


IndexPair = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]


def _folds(table: Table, folds: int, seed: int) -> list[IndexPair]:
    """(training rows, held rows) of each non-empty fold."""
    fold = group_folds(table, folds, seed)
    out: list[IndexPair] = []
    for f in range(folds):
        held, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        if len(held) and len(train):
            out.append((train, held))
    return out


def choose_l2(
    table: Table,
    *,
    folds: int,
    seed: int = 0,
    iterations: int = DEFAULT_ITERATIONS,
    grid: Sequence[float] = L2_GRID,
    spend_grid: Sequence[float] = SPEND_L2_GRID,
) -> Choice:
    """The grid values with the lowest mean out-of-fold loss (module docstring)."""
    splits = _folds(table, folds, seed)
    if not splits:
        raise RoutingError(f"{len(table)} items are too few to choose penalties out-of-fold")
    x, correct, joules = table.features, table.correct, table.energy_j
    models = range(correct.shape[1])
    losses = {}
    for l2 in grid:
        total = []
        for train, held in splits:
            for j in models:
                fitted = fit_logistic(x[train], correct[train, j], l2=l2, iterations=iterations)
                total.append(log_loss(fitted.predict(x[held]), correct[held, j]))
        losses[l2] = float(np.mean(total))
    errors: dict[float, float] = {}
    for l2 in spend_grid:
        squared: list[float] = []
        for train, held in splits:
            for j in models:
                model = fit_spend(x[train], joules[train, j], l2=l2)
                truth = joules[held, j]
                known = np.isfinite(truth) & (truth > 0)
                if model is None or not known.any():
                    continue
                predicted = np.log(model.predict(x[held][known]))
                squared.extend(((predicted - np.log(truth[known])) ** 2).tolist())
        if squared:
            errors[l2] = float(np.mean(squared))
    return Choice(
        l2=min(losses, key=lambda k: losses[k]),
        spend_l2=min(errors, key=lambda k: errors[k]) if errors else None,
        log_loss=losses,
        spend_mse=errors,
    )
