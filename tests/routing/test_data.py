"""The routing table from stored results, and splits without prompt leakage."""

from __future__ import annotations

import pytest

from smallfirst.evals.items import Item
from smallfirst.types import prompt_hash
from tests.routing.synthetic import synthetic

pytestmark = pytest.mark.fast


def test_an_items_hash_counts_its_prefilled_reply() -> None:
    _, prompts = synthetic(3)
    for (benchmark, item_id), messages in prompts.items():
        item = Item(benchmark, item_id, messages, "code", "x", assistant_prefix="```python\n")
        plain = Item(benchmark, item_id, messages, "code", "x")
        assert item.prompt_hash() == prompt_hash(messages, "```python\n")
        assert plain.prompt_hash() == prompt_hash(messages) != item.prompt_hash()
