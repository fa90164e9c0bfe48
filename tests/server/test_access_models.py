"""Budgets on a real model: 50 concurrent clients on one key whose watt-hour budget fits
exactly K of SmolLM2's worst cases (its per-token profile times the energy margin, on the
prompt's byte bound plus max_tokens). Exactly K are answered, the rest get 429
``insufficient_quota``, and the key's settled spend is the sum of its receipts, within the
budget.

The receipts measure energy (the CPU-time estimate here: CPU seconds and RAM power over
the request's duration), which on a busy machine is several times the shipped profile's
figure; the test configures a conservative profile, as docs/access.md advises for hard
energy budgets on local models, and loads the model before the key exists (the loading
request's receipt carries the load)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from smallfirst.engines.base import GenerationRequest, Sampling
from smallfirst.settings import ProfileConfig, Settings
from smallfirst.store.keys import KeySpec
from smallfirst.types import Message
from tests.conftest import SMOL, LiveServer
from tests.server.test_access import MSG, race


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("access-models")
    conservative = ProfileConfig(j_per_input_token=5.0, j_per_output_token=10.0)
    update = {"data_dir": data, "profiles": {SMOL: conservative}}
    with LiveServer(settings.model_copy(update=update)) as live:
        body = {"model": SMOL, "messages": MSG, "max_tokens": 1}
        httpx.post(live.url + "/v1/chat/completions", json=body, timeout=120).raise_for_status()
        yield live


def test_fifty_clients_on_smollm2_with_a_budget_of_k_worst_cases(server: LiveServer) -> None:
    k, max_tokens = 3, 4
    access = server.app.state.access
    gen = GenerationRequest(
        Sampling(max_tokens=max_tokens),
        messages=tuple(Message(m["role"], m["content"]) for m in MSG),
    )
    worst = access.worst_case(SMOL, gen)
    assert worst.wh is not None and worst.wh > 0
    key, secret = access.keys.create(KeySpec(name="smol-race", budget_wh=k * worst.wh))
    body: dict[str, Any] = {"model": SMOL, "messages": MSG, "max_tokens": max_tokens}
    statuses = race(server.url, secret, 50, body)
    assert statuses.count(200) == k and statuses.count(429) == 50 - k
    after = access.keys.get(key.id)
    receipts = server.app.state.store.list(key_id=key.id, limit=100).receipts
    assert len(receipts) == k and all(r.energy_j for r in receipts)
    assert after.reserved.wh == pytest.approx(0.0, abs=1e-12)
    assert after.spent.wh == pytest.approx(sum(r.energy_j or 0 for r in receipts) / 3600)
    assert after.spent.wh <= k * worst.wh
