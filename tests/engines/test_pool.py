"""The engine pool: memory budget with LRU eviction, and different models side by side."""

from __future__ import annotations

import threading
import time

import httpx
import openai

from smallfirst.settings import Settings
from tests.conftest import QWEN, SMOL, LiveServer, require_models


def test_lru_eviction_within_budget(settings: Settings) -> None:
    require_models(settings, QWEN)
    # room for Qwen-0.5B (~0.5 GB + KV) or SmolLM2, not both
    with LiveServer(settings.model_copy(update={"memory_budget_mb": 560})) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)

        def ask(model: str) -> list[str]:
            """Ask ``model``; then the models loaded, as /health reports them."""
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
            loaded: list[str] = httpx.get(server.url + "/health").json()["models_loaded"]
            return loaded

        assert ask(SMOL) == [SMOL]
        assert ask(QWEN) == [QWEN]
        assert ask(SMOL) == [SMOL]


def test_different_models_generate_at_the_same_time(
    settings: Settings, client: openai.OpenAI
) -> None:
    require_models(settings, QWEN)
    for model in (SMOL, QWEN):  # load both first so timing is generation only
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
    times: dict[str, list[float]] = {SMOL: [], QWEN: []}

    def stream(model: str) -> None:
        for _ in client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Write a story about a cat."}],
            max_tokens=60,
            temperature=1.0,
            seed=3,
            stream=True,
        ):
            times[model].append(time.monotonic())

    threads = [threading.Thread(target=stream, args=(m,)) for m in (QWEN, SMOL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    # SmolLM2 produced tokens while Qwen was still generating: no global lock between models
    assert len(times[SMOL]) > 10 and len(times[QWEN]) > 10
    assert times[SMOL][5] < times[QWEN][-1]
    assert times[QWEN][5] < times[SMOL][-1]
