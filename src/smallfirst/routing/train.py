"""From a table of evaluation results to a saved-ready router artifact, held-out scores included.

:func:`train` splits the table (grouped by prompt, stratified by benchmark, seeded), fits
and calibrates on the training split (:func:`.fit.fit`), evaluates on the held-out split
(:func:`.evaluation.evaluate`) and returns the artifact with those held-out metrics in it.
This module composes the others; it neither reads the database nor writes files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from smallfirst.routing.artifact import RouterArtifact, now_iso
from smallfirst.routing.data import Table, split
from smallfirst.routing.evaluation import Evaluation, evaluate
from smallfirst.routing.fit import DEFAULT_FOLDS, fit
from smallfirst.routing.logistic import DEFAULT_ITERATIONS, DEFAULT_L2

DEFAULT_HELDOUT = 0.25


def train(
    table: Table,
    *,
    tiers: Mapping[str, str] | None = None,
    seed: int = 0,
    heldout_fraction: float = DEFAULT_HELDOUT,
    folds: int = DEFAULT_FOLDS,
    l2: float = DEFAULT_L2,
    iterations: int = DEFAULT_ITERATIONS,
    progress: Callable[[str], None] | None = None,
) -> tuple[RouterArtifact, Evaluation]:
    parts = split(table, heldout_fraction, seed)
    if not len(parts.train) or not len(parts.heldout):
        raise ValueError(
            f"{len(table)} items are too few to hold some out; evaluate more items first"
        )
    train_table = table.take(parts.train)
    heldout = table.take(parts.heldout)
    fitted = fit(
        train_table, folds=folds, seed=seed, l2=l2, iterations=iterations, progress=progress
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
            "iterations": iterations,
        },
    )
    if progress:
        progress("held-out evaluation")
    evaluation = evaluate(artifact, heldout)
    return replace(artifact, heldout_metrics=evaluation.to_json()), evaluation
