"""``/v1/embeddings`` through a real gateway on loopback, driven by the openai client.

The model tests embed with SmolLM2-135M (quality does not matter for the wire: order,
encodings, token input, usage, receipts, limits); the similarity test asks ``auto``, the
default embedding model that bench/embedding_similarity.py chose. The refusals that happen
before a model is touched run in the fast lane on a gateway of their own.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from smallfirst.catalog import Catalog
from smallfirst.settings import Settings, UserModel
from smallfirst.store.keys import KeySpec
from tests.conftest import SMOL, LiveServer

CAT = "The cat sat on the mat."
CAT_AGAIN = "A cat was sitting on the mat."
TAXES = "Quarterly tax revenue rose by eight percent."


def vectors(response: Any) -> list[np.ndarray]:
    return [np.asarray(d.embedding, dtype=np.float64) for d in response.data]


def raw(gateway: LiveServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/embeddings", json=body, timeout=300)


def tokens_of(settings: Settings, model: str, text: str) -> list[int]:
    """``text`` as the model's own tokenizer splits it (BOS included where it adds one)."""
    import llama_cpp

    catalog = Catalog(settings)
    llm = llama_cpp.Llama(
        str(catalog.file_path(catalog.get(model))), vocab_only=True, verbose=False
    )
    tokens = llm.tokenize(text.encode(), add_bos=True, special=False)
    llm.close()
    return list(tokens)


# --- on SmolLM2 -----------------------------------------------------------------------------


def test_a_batch_comes_back_indexed_in_order_as_unit_vectors(client: openai.OpenAI) -> None:
    texts = [CAT, TAXES, CAT_AGAIN, "x", CAT]
    r = client.embeddings.create(model=SMOL, input=texts, encoding_format="float")
    assert r.object == "list" and r.model == SMOL
    assert [d.index for d in r.data] == list(range(len(texts)))
    got = vectors(r)
    assert all(v.shape == (576,) for v in got)  # SmolLM2-135M's hidden size
    assert all(np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5) for v in got)
    # the same text in two places of a batch gets the same vector (to llama.cpp's rounding,
    # which differs with a row's place in the batch); different texts do not
    assert float(got[0] @ got[4]) > 0.9999
    assert float(got[0] @ got[1]) < 0.99
    # each input alone gives what it gave in the batch (packing does not mix sequences)
    alone = vectors(client.embeddings.create(model=SMOL, input=TAXES, encoding_format="float"))
    assert float(alone[0] @ got[1]) > 0.9999


def test_base64_decodes_to_the_float_vector(gateway: LiveServer) -> None:
    floats = raw(gateway, {"model": SMOL, "input": CAT}).json()["data"][0]["embedding"]
    b64 = raw(gateway, {"model": SMOL, "input": CAT, "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
    assert decoded.shape == (576,)
    assert np.array_equal(decoded, np.asarray(floats, dtype=np.float32))


def test_the_sdk_default_base64_round_trip(client: openai.OpenAI) -> None:
    # the openai SDK asks for base64 unless told otherwise and decodes it itself
    sdk = vectors(client.embeddings.create(model=SMOL, input=CAT))
    floats = vectors(client.embeddings.create(model=SMOL, input=CAT, encoding_format="float"))
    assert np.allclose(sdk[0], floats[0], atol=1e-6)  # the same request twice: the same vector


def test_token_arrays_embed_as_their_text_does(client: openai.OpenAI, settings: Settings) -> None:
    cat, taxes = tokens_of(settings, SMOL, CAT), tokens_of(settings, SMOL, TAXES)
    text = vectors(
        client.embeddings.create(model=SMOL, input=[CAT, TAXES], encoding_format="float")
    )
    one = client.embeddings.create(model=SMOL, input=cat, encoding_format="float")
    many = client.embeddings.create(model=SMOL, input=[cat, taxes], encoding_format="float")
    assert len(one.data) == 1 and one.usage.prompt_tokens == len(cat)
    assert float(vectors(one)[0] @ text[0]) > 0.9999
    assert float(vectors(many)[1] @ text[1]) > 0.9999


def test_usage_counts_the_input_tokens_and_the_receipt_is_stored(
    gateway: LiveServer, settings: Settings
) -> None:
    r = raw(gateway, {"model": SMOL, "input": [CAT, TAXES]})
    assert r.status_code == 200
    body = r.json()
    n = len(tokens_of(settings, SMOL, CAT)) + len(tokens_of(settings, SMOL, TAXES))
    assert body["usage"] == {"prompt_tokens": n, "total_tokens": n}
    receipt = body["smallfirst"]
    assert receipt["tokens"] == {"prompt": n, "completion": 0}
    assert receipt["energy"]["energy_j"] > 0
    assert r.headers["x-smallfirst-receipt-id"] == receipt["receipt_id"]
    stored = httpx.get(gateway.url + f"/smallfirst/v1/receipts/{receipt['receipt_id']}")
    assert stored.status_code == 200 and stored.json()["model"] == SMOL
    row = gateway.app.state.store.get(receipt["receipt_id"])
    assert row.endpoint == "embeddings" and row.status == "ok"
    # the receipts list, the summary and the dashboard's data still read it
    for path in (
        "/smallfirst/v1/receipts",
        "/smallfirst/v1/summary",
        "/smallfirst/v1/dashboard/meta",
        "/smallfirst/v1/dashboard/timeseries",
        "/smallfirst/v1/dashboard/frontier",
    ):
        assert httpx.get(gateway.url + path).status_code == 200, path


def test_without_receipts_the_body_has_none(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    update = {"data_dir": tmp_path_factory.mktemp("no-receipts"), "receipts": False}
    with LiveServer(settings.model_copy(update=update)) as live:
        r = raw(live, {"model": SMOL, "input": CAT})
        assert r.status_code == 200 and "smallfirst" not in r.json()
        assert r.headers["x-smallfirst-model"] == SMOL
        assert len(r.json()["data"][0]["embedding"]) == 576


def test_an_input_longer_than_the_context_is_a_400(gateway: LiveServer) -> None:
    long = "word " * 1000  # past the embedding context (embedding_n_ctx, 512)
    r = raw(gateway, {"model": SMOL, "input": ["fine", long]})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "input"
    assert "input[1]" in error["message"]


def test_a_token_id_outside_the_vocabulary_is_a_400(gateway: LiveServer) -> None:
    r = raw(gateway, {"model": SMOL, "input": [1, 2, 10_000_000]})
    assert r.status_code == 400
    assert "vocabulary" in r.json()["error"]["message"]


def test_auto_embeds_with_the_default_model(client: openai.OpenAI, settings: Settings) -> None:
    r = client.embeddings.create(model="auto", input=[CAT, CAT_AGAIN, TAXES])
    catalog = Catalog(settings)
    default = catalog.get(settings.embedding_model)
    expected = settings.embedding_model if catalog.is_installed(default) else SMOL
    assert r.model == expected
    cat, again, taxes = vectors(r)
    assert float(cat @ again) > float(cat @ taxes)


# --- refused before a model runs --------------------------------------------------------


@pytest.fixture(scope="module")
def bare(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A gateway that also knows a remote chat model (which does not embed)."""
    chat_only = UserModel(name="remote-chat", base_url="http://127.0.0.1:9/v1")
    update = {"data_dir": tmp_path_factory.mktemp("embeddings"), "models": (chat_only,)}
    with LiveServer(settings.model_copy(update=update)) as live:
        yield live


@pytest.mark.fast
@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ({"input": ""}, "input", 400),
        ({"input": []}, "input", 400),
        ({"input": ["fine", ""]}, "input", 400),
        ({"input": [[1, 2], []]}, "input", 400),
        ({"input": [-1]}, "input", 400),
        ({"input": ["a"] * 2049}, "input", 400),
        ({"input": "hi", "dimensions": 64}, "dimensions", 400),
        ({"input": "hi", "encoding_format": "int8"}, "encoding_format", 400),
        ({"input": 3}, "input", 400),
        ({}, "input", 400),
        ({"input": "hi", "model": "no-such-model"}, "model", 404),
        ({"input": "hi", "model": "remote-chat"}, "model", 400),
    ],
)
def test_refusals(bare: LiveServer, body: dict[str, Any], param: str, status: int) -> None:
    r = raw(bare, {"model": SMOL, **body})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert not bare.app.state.pool.loaded_models()  # nothing ran for a refusal


@pytest.mark.fast
def test_a_model_that_does_not_embed_is_refused_with_one_that_does(bare: LiveServer) -> None:
    client = openai.OpenAI(base_url=bare.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="remote-chat", input="hi")
    message = caught.value.body["message"]  # type: ignore[index]
    assert "'remote-chat' does not serve embeddings" in message
    assert repr(bare.settings.embedding_model) in message or repr(SMOL) in message


@pytest.mark.fast
def test_the_model_list_says_which_models_embed(bare: LiveServer) -> None:
    models = {m["id"]: m["smallfirst"] for m in httpx.get(bare.url + "/v1/models").json()["data"]}
    assert models[SMOL]["embeds"] is True
    assert models["remote-chat"]["embeds"] is False


@pytest.mark.fast
def test_the_route_is_documented(bare: LiveServer) -> None:
    doc = httpx.get(bare.url + "/openapi.json").json()
    post = doc["paths"]["/v1/embeddings"]["post"]
    ok = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/EmbeddingList")
    assert {"400", "404", "429"} <= set(post["responses"])
    body = doc["components"]["schemas"]["EmbeddingRequest"]
    assert {"model", "input"} <= set(body["required"])


@pytest.mark.fast
def test_api_keys_apply(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    update = {"data_dir": tmp_path_factory.mktemp("embeddings-keys")}
    with LiveServer(settings.model_copy(update=update)) as live:
        keys = live.app.state.access.keys
        _, secret = keys.create(KeySpec(name="qwen-only", models=("qwen*",)))
        body = {"model": SMOL, "input": "hi"}
        assert raw(live, body).status_code == 401  # a key exists: anonymous is refused
        r = httpx.post(
            live.url + "/v1/embeddings", json=body, headers={"authorization": f"Bearer {secret}"}
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"


def test_concurrent_requests_take_turns_and_each_gets_its_own_vectors(
    client: openai.OpenAI,
) -> None:
    import concurrent.futures

    texts = [CAT, TAXES, CAT_AGAIN, "Tomorrow it will rain."]
    alone = [vectors(client.embeddings.create(model=SMOL, input=t))[0] for t in texts]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda t: client.embeddings.create(model=SMOL, input=t), texts))
    for mine, theirs in zip(alone, together, strict=True):
        assert float(mine @ vectors(theirs)[0]) > 0.9999


def test_a_client_that_goes_away_stops_it_and_leaves_a_cancelled_receipt(
    gateway: LiveServer,
) -> None:
    store = gateway.app.state.store
    before = {r.id for r in store.list(limit=100).receipts}
    many = {"model": SMOL, "input": ["The cat sat on the mat by the warm fire."] * 2048}
    with pytest.raises(httpx.TimeoutException):  # ~25,000 tokens: seconds even on a fast core
        httpx.post(gateway.url + "/v1/embeddings", json=many, timeout=1.0)
    # the next request is served once the decode in progress ends, not after all 2048 inputs
    assert raw(gateway, {"model": SMOL, "input": CAT}).status_code == 200
    new = [r for r in store.list(limit=100).receipts if r.id not in before]
    assert [r.status for r in new if r.endpoint == "embeddings"].count("cancelled") == 1
