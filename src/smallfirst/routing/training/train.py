"""From a table of evaluation results to a saved-ready router artifact, held-out scores included.

:func:`train` splits the table (grouped by prompt, stratified by benchmark, seeded), chooses
the L2 penalties out-of-fold on the training split unless given (:mod:`.regularisation`),
fits and calibrates on the training split (:func:`.fit.fit`), evaluates on the held-out split
(:func:`.evaluation.evaluate`) and returns the artifact with those held-out metrics in it.
This module composes the others; it neither reads the database nor writes files. Settings
that cannot be trained with (a held-out fraction outside (0, 1), fewer than two folds, a
penalty that is not positive, too few items) raise :class:`~smallfirst.errors.RoutingError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from smallfirst.errors import RoutingError
from smallfirst.routing.artifact import RouterArtifact, now_iso
from smallfirst.routing.training.evaluation import Evaluation, evaluate
from smallfirst.routing.training.fit import DEFAULT_FOLDS, fit
from smallfirst.routing.training.regression import DEFAULT_ITERATIONS, DEFAULT_SPEND_L2
from smallfirst.routing.training.regularisation import choose_l2
from smallfirst.routing.training.splits import split
from smallfirst.routing.training.table import Table

__all__ = ["DEFAULT_HELDOUT", "train"]

DEFAULT_HELDOUT = 0.25


def train(
    table: Table,
    *,
    tiers: Mapping[str, str] | None = None,
    seed: int = 0,
    heldout_fraction: float = DEFAULT_HELDOUT,
    folds: int = DEFAULT_FOLDS,
    l2: float | None = None,
    spend_l2: float | None = None,
    iterations: int = DEFAULT_ITERATIONS,
    progress: Callable[[str], None] | None = None,
) -> tuple[RouterArtifact, Evaluation]:
    if len(table.models) < 2:
        raise RoutingError("routing needs at least two models")
    for name, value in (("l2", l2), ("spend_l2", spend_l2)):
        if value is not None and not value > 0:  # also refuses NaN
            raise RoutingError(f"the {name} penalty must be positive, got {value:g}")
    parts = split(table, heldout_fraction, seed)
    if not len(parts.train) or not len(parts.heldout):
        raise RoutingError(
            f"{len(table)} items are too few to hold some out; evaluate more items first"
        )
    train_table = table.take(parts.train)
    heldout = table.take(parts.heldout)
    selection = None
    if l2 is None or spend_l2 is None:
        if progress:
            progress("choosing L2 penalties out-of-fold")
        selection = choose_l2(train_table, folds=folds, seed=seed, iterations=iterations)
        l2 = selection.l2 if l2 is None else l2
        if spend_l2 is None:
            spend_l2 = selection.spend_l2 or DEFAULT_SPEND_L2
    fitted = fit(
        train_table,
        folds=folds,
        seed=seed,
        l2=l2,
        spend_l2=spend_l2,
        iterations=iterations,
        progress=progress,
    )
    benchmarks: dict[str, int] = {}
    for b in train_table.benchmarks:
        benchmarks[b] = benchmarks.get(b, 0) + 1
    artifact = RouterArtifact(
        created_at=now_iso(),
        training_run_ids=table.run_ids,
        # candidates from the training split: the figures the router was calibrated with
        candidates=tuple(train_table.candidates(tiers)),
        predictive=fitted.predictive,
        verifiers=fitted.verifiers,
        spend=fitted.spend,
        calibration=fitted.calibration,
        seed=seed,
        heldout_fraction=heldout_fraction,
        heldout_keys=tuple(heldout.keys),
        training={
            "n_train": len(train_table),
            "n_heldout": len(heldout),
            "items_per_benchmark": dict(sorted(benchmarks.items())),
            "folds": folds,
            "l2": l2,
            "spend_l2": spend_l2,
            "iterations": iterations,
            **({"l2_selection": selection.to_json()} if selection else {}),
        },
    )
    if progress:
        progress("held-out evaluation")
    evaluation = evaluate(artifact, heldout)
    return replace(artifact, heldout_metrics=evaluation.to_json()), evaluation
