"""The router's training table, built from stored evaluation results.

One row per (benchmark, item_id) that has a result for *every* candidate model: the prompt's
features, and per model whether it was right, the joules and dollars the answer took, and
the answer's text (the cascade's output verifier reads it). Models are ordered cheapest
first by mean energy per item over the table (mean cost where energy is unknown), so the
last is the reference.

Where the prompts come from: the results table stores each item's ``prompt_hash``, not its
text, so :func:`load_prompts` re-creates the items with :func:`smallfirst.evals.benchmarks.load`
and matches them by (benchmark, item_id); a row is kept only if the re-created prompt hashes
to the stored ``prompt_hash`` (with or without the item's pre-filled reply: remote endpoints
are asked without it), so a benchmark whose prompt format changed since the run never trains
the router on prompts the models did not see. A row's ``prompt_hashes`` entry is the hash of
its messages alone, which is what a live request can be matched on. When a (benchmark, item, model)
was answered in several runs, the most recent answer counts.

Results that cannot make a table (none at all, or no item with a result for every model and
a known prompt) raise :class:`~smallfirst.errors.EvaluationError`; asking for a model the
table lacks raises it too.

This module reads results and benchmark data; it splits (:mod:`.splits`) and fits nothing.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from smallfirst.errors import BenchmarkError, DataError, EvaluationError
from smallfirst.evals.benchmarks import load
from smallfirst.routing.artifact import ItemKey
from smallfirst.routing.base import Candidate
from smallfirst.routing.features import BoolArray, FloatArray, IntArray, prompt_feature_matrix
from smallfirst.routing.policy import Axis
from smallfirst.settings import Settings
from smallfirst.store.eval_results import EvalResult
from smallfirst.types import Message, prompt_hash

__all__ = ["LoadedPrompts", "Table", "build_table", "load_prompts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Table:
    """Evaluation results as arrays: ``n`` items (rows) by ``m`` models (columns)."""

    models: tuple[str, ...]  # cheapest first; the last is the reference
    benchmarks: tuple[str, ...]  # per row
    item_ids: tuple[str, ...]
    prompt_hashes: tuple[str, ...]
    features: FloatArray  # (n, N_PROMPT_FEATURES)
    correct: BoolArray  # (n, m)
    energy_j: FloatArray  # (n, m); NaN where unknown
    cost_usd: FloatArray  # (n, m); NaN where unknown
    outputs: tuple[tuple[str, ...], ...]  # (n, m) answers
    run_ids: tuple[str, ...]  # the runs the rows came from

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def keys(self) -> list[ItemKey]:
        return list(zip(self.benchmarks, self.item_ids, strict=True))

    def take(self, rows: IntArray | Sequence[int]) -> Table:
        """The table restricted to ``rows`` (in that order)."""
        idx = np.asarray(rows, dtype=np.intp)
        return Table(
            models=self.models,
            benchmarks=tuple(self.benchmarks[i] for i in idx),
            item_ids=tuple(self.item_ids[i] for i in idx),
            prompt_hashes=tuple(self.prompt_hashes[i] for i in idx),
            features=self.features[idx],
            correct=self.correct[idx],
            energy_j=self.energy_j[idx],
            cost_usd=self.cost_usd[idx],
            outputs=tuple(self.outputs[i] for i in idx),
            run_ids=self.run_ids,
        )

    def with_models(self, models: Sequence[str]) -> Table:
        """The table with its model columns in the order ``models`` gives (a subset)."""
        missing = [m for m in models if m not in self.models]
        if missing:
            raise EvaluationError(f"the table has no results for {', '.join(missing)}")
        cols = [self.models.index(m) for m in models]
        return Table(
            models=tuple(models),
            benchmarks=self.benchmarks,
            item_ids=self.item_ids,
            prompt_hashes=self.prompt_hashes,
            features=self.features,
            correct=self.correct[:, cols],
            energy_j=self.energy_j[:, cols],
            cost_usd=self.cost_usd[:, cols],
            outputs=tuple(tuple(row[c] for c in cols) for row in self.outputs),
            run_ids=self.run_ids,
        )

    def axis(self, axis: Axis) -> FloatArray | None:
        """Per-item spend on ``axis`` (n, m), unknown cells filled with the model's mean.

        ``None`` when some model has no known value at all on this axis: then nothing can
        be said about that axis, and saying zero would be a silent lie.
        """
        raw = self.energy_j if axis == "energy" else self.cost_usd
        if len(self) == 0:
            return None
        known = ~np.isnan(raw)
        if not known.any(axis=0).all():
            return None
        means = np.nanmean(raw, axis=0)
        return np.where(known, raw, means[np.newaxis, :])

    def candidates(self, tiers: Mapping[str, str] | None = None) -> list[Candidate]:
        """The models as router candidates (cheapest first), with their mean spend per item."""
        out = []
        for j, name in enumerate(self.models):
            energy = self.energy_j[:, j]
            cost = self.cost_usd[:, j]
            out.append(
                Candidate(
                    name=name,
                    tier=(tiers or {}).get(name, "?"),
                    energy_j_per_item=_nanmean_or_none(energy),
                    cost_usd_per_item=_nanmean_or_none(cost),
                )
            )
        return out


def _nanmean_or_none(values: FloatArray) -> float | None:
    known = values[~np.isnan(values)]
    return float(known.mean()) if known.size else None


class LoadedPrompts(NamedTuple):
    messages: dict[ItemKey, tuple[Message, ...]]
    prefixes: dict[ItemKey, str]  # the pre-filled reply, for items that have one


def load_prompts(benchmarks: Iterable[str], settings: Settings) -> LoadedPrompts:
    """Re-create each benchmark's items and return their prompts by (benchmark, item_id).

    A benchmark that cannot be loaded (an unknown name, a jsonl file that moved, data that
    cannot be fetched) is skipped with a warning: its results then have no prompt and are
    left out of the table.
    """
    loaded = LoadedPrompts({}, {})
    for name in sorted(set(benchmarks)):
        try:
            items = load(name, settings)
        except (BenchmarkError, DataError) as exc:
            log.warning("cannot load benchmark %s, its results are skipped: %s", name, exc)
            continue
        for item in items:
            key = (item.benchmark, item.item_id)
            loaded.messages[key] = item.messages
            if item.assistant_prefix is not None:
                loaded.prefixes[key] = item.assistant_prefix
    return loaded


Row = tuple[ItemKey, tuple[Message, ...], dict[str, EvalResult]]


def _latest(results: Iterable[EvalResult]) -> dict[tuple[str, str, str], EvalResult]:
    """The most recent result per (benchmark, item_id, model)."""
    latest: dict[tuple[str, str, str], EvalResult] = {}
    for r in results:
        key = (r.benchmark, r.item_id, r.model)
        old = latest.get(key)
        if old is None or r.created_at >= old.created_at:
            latest[key] = r
    return latest


def _rows(
    by_item: Mapping[ItemKey, dict[str, EvalResult]],
    wanted: Sequence[str],
    prompts: Mapping[ItemKey, Sequence[Message]],
    prefixes: Mapping[ItemKey, str],
) -> list[Row]:
    """The items with a result for every wanted model and a prompt that hashes as stored."""
    rows: list[Row] = []
    incomplete = unknown = changed = 0
    for item in sorted(by_item):
        per_model = by_item[item]
        if len(per_model) < len(wanted):
            incomplete += 1
            continue
        found = prompts.get(item)
        if found is None:
            unknown += 1
            continue
        messages = tuple(found)
        prefix = prefixes.get(item)
        asked = {prompt_hash(messages)} | ({prompt_hash(messages, prefix)} if prefix else set())
        if any(r.prompt_hash not in asked for r in per_model.values()):
            changed += 1
            continue
        rows.append((item, messages, per_model))
    if incomplete or unknown or changed:
        log.info(
            "routing table: %d items kept; left out %d without a result for every model, "
            "%d whose prompt could not be re-created, %d whose prompt changed since the run",
            len(rows),
            incomplete,
            unknown,
            changed,
        )
    return rows


def _figures(
    rows: Sequence[Row], wanted: Sequence[str]
) -> tuple[BoolArray, FloatArray, FloatArray]:
    """Right or wrong, joules and dollars per (row, wanted model); NaN where unknown."""
    n, m = len(rows), len(wanted)
    correct = np.zeros((n, m), dtype=np.bool_)
    energy = np.full((n, m), np.nan)
    cost = np.full((n, m), np.nan)
    for i, (_, _, per_model) in enumerate(rows):
        for j, model in enumerate(wanted):
            r = per_model[model]
            correct[i, j] = r.correct
            if r.energy_j is not None:
                energy[i, j] = r.energy_j
            if r.cost_usd is not None:
                cost[i, j] = r.cost_usd
    return correct, energy, cost


def build_table(
    results: Iterable[EvalResult],
    prompts: Mapping[ItemKey, Sequence[Message]],
    models: Sequence[str] | None = None,
    prefixes: Mapping[ItemKey, str] | None = None,
) -> Table:
    """Join results into a :class:`Table` (see the module docstring for the rules).

    ``models`` restricts the candidates (default: every model in the results); items that
    lack a result for any of them are left out, as are items whose prompt is unknown or
    hashes differently from the stored ``prompt_hash``.
    """
    latest = _latest(results)
    wanted = list(dict.fromkeys(models)) if models else sorted({k[2] for k in latest})
    if not wanted:
        raise EvaluationError("no evaluation results to build a routing table from")
    by_item: dict[ItemKey, dict[str, EvalResult]] = defaultdict(dict)
    for (benchmark, item_id, model), r in latest.items():
        if model in wanted:
            by_item[(benchmark, item_id)][model] = r
    rows = _rows(by_item, wanted, prompts, prefixes or {})
    if not rows:
        raise EvaluationError(
            f"no item has a result for every model of {', '.join(wanted)} with a known prompt"
        )
    correct, energy, cost = _figures(rows, wanted)
    order = _cheapest_first(wanted, energy, cost)
    return Table(
        models=tuple(wanted[j] for j in order),
        benchmarks=tuple(k[0] for k, _, _ in rows),
        item_ids=tuple(k[1] for k, _, _ in rows),
        prompt_hashes=tuple(prompt_hash(msgs) for _, msgs, _ in rows),
        features=prompt_feature_matrix([msgs for _, msgs, _ in rows]),
        correct=correct[:, order],
        energy_j=energy[:, order],
        cost_usd=cost[:, order],
        outputs=tuple(tuple(pm[wanted[j]].output for j in order) for _, _, pm in rows),
        run_ids=tuple(sorted({r.run_id for _, _, pm in rows for r in pm.values()})),
    )


def _cheapest_first(models: Sequence[str], energy: FloatArray, cost: FloatArray) -> list[int]:
    def key(j: int) -> tuple[float, float, int]:
        e = _nanmean_or_none(energy[:, j])
        c = _nanmean_or_none(cost[:, j])
        return (math.inf if e is None else e, math.inf if c is None else c, j)

    return sorted(range(len(models)), key=key)
