"""The routing table from stored results, and splits without prompt leakage."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from smallfirst.evals.items import Item
from smallfirst.evals.runner import prompt_hash
from smallfirst.routing.base import prompt_key
from smallfirst.routing.data import build_table, group_folds, split
from tests.routing.synthetic import JOULES, MODELS, synthetic, synthetic_table


def test_prompt_key_is_the_runners_prompt_hash() -> None:
    _, prompts = synthetic(5)
    for (benchmark, item_id), messages in prompts.items():
        item = Item(benchmark, item_id, messages, "exact", "x")
        assert prompt_key(messages) == prompt_hash(item)


def test_prompt_key_counts_a_prefilled_reply() -> None:
    _, prompts = synthetic(3)
    for (benchmark, item_id), messages in prompts.items():
        item = Item(benchmark, item_id, messages, "code", "x", assistant_prefix="```python\n")
        assert prompt_key(messages, "```python\n") == prompt_hash(item) != prompt_key(messages)


def test_prefilled_results_count_and_a_row_is_keyed_by_its_messages() -> None:
    # in-process models were asked pre-filled, a remote one without: both are the same item
    results, prompts = synthetic(20)
    prefix = "Below is a script:\n```python\n"
    prefixes = dict.fromkeys(prompts, prefix)
    asked = [
        r
        if r.model == MODELS[2]
        else dataclasses.replace(
            r, prompt_hash=prompt_key(prompts[(r.benchmark, r.item_id)], prefix)
        )
        for r in results
    ]
    with pytest.raises(ValueError, match="no item has a result"):
        build_table(asked, prompts)  # without the prefixes every prompt looks changed
    table = build_table(asked, prompts, prefixes=prefixes)
    assert len(table) == 20
    assert set(table.prompt_hashes) == {prompt_key(m) for m in prompts.values()}


def test_table_rows_models_and_order() -> None:
    results, prompts = synthetic(60)
    # the results come in any order; the table orders models cheapest first
    table = build_table(list(reversed(results)), prompts)
    assert table.models == MODELS
    assert len(table) == 60
    assert table.correct.shape == table.energy_j.shape == (60, 3)
    assert table.features.shape[0] == 60
    means = np.nanmean(table.energy_j, axis=0)
    assert np.all(np.diff(means) > 0) and means[0] < JOULES[0] * 2
    assert [c.name for c in table.candidates()] == list(MODELS)
    assert table.run_ids == ("synth",)


def test_incomplete_unknown_and_changed_prompts_are_left_out() -> None:
    results, prompts = synthetic(30)
    first = results[0]
    # an item missing one model, an item without a prompt, an item whose prompt changed
    dropped = [r for r in results if not (r.item_id == first.item_id and r.model == MODELS[1])]
    unknown_key = (results[3].benchmark, results[3].item_id)
    changed_key = (results[6].benchmark, results[6].item_id)
    prompts = dict(prompts)
    del prompts[unknown_key]
    prompts[changed_key] = (dataclasses.replace(prompts[changed_key][0], content="new"),)
    table = build_table(dropped, prompts)
    assert len(table) == 27
    assert first.item_id not in table.item_ids
    assert unknown_key[1] not in table.item_ids and changed_key[1] not in table.item_ids


def test_latest_answer_wins_and_models_filter() -> None:
    results, prompts = synthetic(10)
    r = results[0]
    newer = dataclasses.replace(
        r, run_id="later", correct=not r.correct, created_at=r.created_at + 1e6
    )
    table = build_table([*results, newer], prompts, models=[MODELS[0], MODELS[2]])
    assert table.models == (MODELS[0], MODELS[2])
    row = table.item_ids.index(r.item_id)
    assert table.correct[row, 0] == newer.correct
    assert table.run_ids == ("later", "synth")
    with pytest.raises(ValueError, match="no item"):
        build_table(results, {})


def test_unknown_spend_is_filled_or_refused() -> None:
    results, prompts = synthetic(12)
    some_unknown = [
        dataclasses.replace(r, energy_j=None) if i % 5 == 0 else r for i, r in enumerate(results)
    ]
    table = build_table(some_unknown, prompts)
    spend = table.axis("energy")
    assert spend is not None and not np.isnan(spend).any()
    no_cost = [dataclasses.replace(r, cost_usd=None) for r in results]
    assert build_table(no_cost, prompts).axis("cost") is None


def test_split_has_no_prompt_in_both_sides_and_is_stratified_and_seeded() -> None:
    table = synthetic_table(300)
    assert len(set(table.prompt_hashes)) < len(table)  # the data has duplicate prompts
    parts = split(table, 0.25, seed=3)
    train = {table.prompt_hashes[i] for i in parts.train}
    held = {table.prompt_hashes[i] for i in parts.heldout}
    assert not train & held
    assert len(parts.train) + len(parts.heldout) == len(table)
    per_benchmark = Counter(table.benchmarks)
    held_per_benchmark = Counter(table.benchmarks[i] for i in parts.heldout)
    for benchmark, n in per_benchmark.items():
        assert 0.15 * n <= held_per_benchmark[benchmark] <= 0.35 * n
    again = split(table, 0.25, seed=3)
    assert np.array_equal(parts.heldout, again.heldout)
    assert not np.array_equal(parts.heldout, split(table, 0.25, seed=4).heldout)


def test_folds_group_prompts() -> None:
    table = synthetic_table(200)
    fold = group_folds(table, 4, seed=0)
    assert set(fold.tolist()) == {0, 1, 2, 3}
    by_prompt: dict[str, set[int]] = {}
    for digest, f in zip(table.prompt_hashes, fold, strict=True):
        by_prompt.setdefault(digest, set()).add(int(f))
    assert all(len(v) == 1 for v in by_prompt.values())
