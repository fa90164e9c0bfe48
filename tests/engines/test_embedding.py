"""The embedding engine: packing inputs into decodes, and a real SmolLM2 embedding context
loaded through the pool (its memory counted, its own engine beside the chat one)."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from smallfirst.catalog import Catalog
from smallfirst.engines.embedding import EMBEDDING_SUFFIX, EmbeddingEngine, pack
from smallfirst.engines.pool import EnginePool
from smallfirst.errors import EmbeddingInputTooLongError, UnsupportedError
from smallfirst.settings import Settings, UserModel
from tests.conftest import SMOL, LiveServer


@pytest.mark.fast
def test_pack_fills_each_decode_up_to_its_tokens_and_sequences() -> None:
    assert pack([], 10, 4) == []
    assert pack([3, 3, 3, 3], 10, 8) == [range(0, 3), range(3, 4)]
    assert pack([10, 1, 10], 10, 8) == [range(0, 1), range(1, 2), range(2, 3)]
    assert pack([1] * 5, 100, 2) == [range(0, 2), range(2, 4), range(4, 5)]
    # every input lands in exactly one group, in order
    groups = pack([4, 7, 1, 9, 2, 2, 5], 10, 3)
    assert [i for g in groups for i in g] == list(range(7))


@pytest.mark.fast
def test_a_remote_model_has_no_embedder(settings: Settings) -> None:
    remote = UserModel(name="remote-chat", base_url="http://127.0.0.1:9/v1")
    pool = EnginePool(Catalog(settings.model_copy(update={"models": (remote,)})), settings)
    with pytest.raises(UnsupportedError):
        asyncio.run(pool.embedder("remote-chat"))


def test_the_pool_loads_an_embedding_context_beside_the_chat_one(settings: Settings) -> None:
    asyncio.run(_load_and_embed(settings))


async def _load_and_embed(settings: Settings) -> None:
    pool = EnginePool(Catalog(settings), settings)
    try:
        engine = await pool.embedder(SMOL)
        assert isinstance(engine, EmbeddingEngine) and engine.loaded
        assert pool.loaded_models() == [SMOL + EMBEDDING_SUFFIX]
        assert pool.loaded_bytes() == engine.memory_bytes > 0
        assert await pool.embedder(SMOL) is engine  # loaded once
        tokens = engine.token_lists(["The cat sat.", [1, 2, 3]])
        assert tokens[1] == [1, 2, 3]
        first, second = await engine.embed(tokens)
        assert first.shape == (engine.n_embd,) and np.linalg.norm(first) == pytest.approx(1.0)
        assert not np.allclose(first, second)
        with pytest.raises(EmbeddingInputTooLongError):
            engine.token_lists([[1] * (engine.n_ctx + 1)])
    finally:
        await pool.aclose()


def test_the_embedding_context_counts_in_the_memory_budget(settings: Settings) -> None:
    # a budget below any one model: each load first unloads whatever is idle
    with LiveServer(settings.model_copy(update={"memory_budget_mb": 1})) as server:

        def loaded_after(path: str, body: dict[str, object]) -> list[str]:
            httpx.post(server.url + path, json={"model": SMOL, **body}, timeout=120)
            models: list[str] = httpx.get(server.url + "/health").json()["models_loaded"]
            return models

        chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        assert loaded_after("/v1/chat/completions", chat) == [SMOL]
        assert loaded_after("/v1/embeddings", {"input": "hi"}) == [SMOL + EMBEDDING_SUFFIX]
        assert loaded_after("/v1/chat/completions", chat) == [SMOL]
