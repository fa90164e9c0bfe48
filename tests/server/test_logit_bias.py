"""``logit_bias`` on both in-process engines, through a real gateway and SmolLM2-135M (#16).

A bias of -100 on the token greedy decoding would emit first removes it; +100 on another
token makes it the first one. A token id past the model's vocabulary is a 400 naming
``logit_bias``. (Out-of-range values, malformed keys, ``stream_options`` without a stream
and seeds beyond 64 bits are refused before any model: tests/server/test_errors.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from smallfirst.catalog import Catalog
from smallfirst.settings import Settings
from tests.conftest import SMOL, LiveServer

PROMPT = "The capital of France is"


@pytest.fixture(scope="module", params=[False, True], ids=["one-at-a-time", "batched"])
def server(
    request: pytest.FixtureRequest, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    over = {"engine_batching": request.param, "parallel": 2}
    data = tmp_path_factory.mktemp("bias")
    with LiveServer(settings.model_copy(update={"data_dir": data, **over})) as live:
        yield live


@pytest.fixture(scope="module")
def vocab(settings: Settings) -> Iterator[Any]:
    import llama_cpp

    catalog = Catalog(settings)
    llm = llama_cpp.Llama(str(catalog.file_path(catalog.get(SMOL))), vocab_only=True, verbose=False)
    yield llm
    llm.close()


def first_token(server: LiveServer, **extra: Any) -> str:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    answer = client.completions.create(
        model=SMOL, prompt=PROMPT, temperature=0, max_tokens=1, **extra
    )
    return answer.choices[0].text


def token_id(vocab: Any, piece: str) -> int:
    tokens = vocab.tokenize(piece.encode(), add_bos=False, special=False)
    assert len(tokens) == 1, (piece, tokens)
    return int(tokens[0])


def test_minus_100_removes_the_greedy_token(server: LiveServer, vocab: Any) -> None:
    greedy = first_token(server)
    banned = token_id(vocab, greedy)
    other = first_token(server, logit_bias={str(banned): -100})
    assert other and other != greedy
    # a small bias leaves the greedy choice alone
    assert first_token(server, logit_bias={str(banned): -0.01}) == greedy


def test_plus_100_forces_a_token(server: LiveServer, vocab: Any) -> None:
    forced = token_id(vocab, " zebra")
    assert first_token(server) != " zebra"
    assert first_token(server, logit_bias={str(forced): 100}) == " zebra"


def test_a_token_past_the_vocabulary_is_400(server: LiveServer, vocab: Any) -> None:
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={
            "model": SMOL,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1,
            "logit_bias": {str(vocab.n_vocab()): 5},
        },
        timeout=60,
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "logit_bias"
