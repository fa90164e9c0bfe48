"""``n`` > 1 through a real gateway and the openai client, on SmolLM2-135M (issue #14).

Both in-process engines: the one-at-a-time engine runs the choices one after another, the
batched one decodes them together from one reading of the prompt (the others copy its KV).
Greedy choices are identical and equal an ``n=1`` answer, as OpenAI's are; a seeded request's
choice ``i`` is the ``n=1`` answer with ``seed + i``; the usage counts the prompt once and
sums the completions; a stream interleaves its choices by ``index`` and gives the same texts
as the body; one receipt covers the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from smallfirst.settings import Settings
from tests.conftest import SMOL, LiveServer

MSG: list[Any] = [{"role": "user", "content": "Write one sentence about the sea."}]


@pytest.fixture(scope="module", params=[False, True], ids=["one-at-a-time", "batched"])
def server(
    request: pytest.FixtureRequest, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    over = {"engine_batching": request.param, "parallel": 2}
    data = tmp_path_factory.mktemp("choices")
    with LiveServer(settings.model_copy(update={"data_dir": data, **over})) as live:
        yield live


def client_of(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_greedy_n3_gives_three_identical_choices(server: LiveServer) -> None:
    client = client_of(server)
    one = client.chat.completions.create(model=SMOL, messages=MSG, temperature=0, max_tokens=16)
    # the n=1 answer is in the response cache by now: n=3 must not be answered from it
    three = client.chat.completions.create(
        model=SMOL, messages=MSG, temperature=0, max_tokens=16, n=3
    )
    assert [c.index for c in three.choices] == [0, 1, 2]
    texts = [c.message.content for c in three.choices]
    assert texts == [one.choices[0].message.content] * 3
    assert all(c.finish_reason == one.choices[0].finish_reason for c in three.choices)
    assert one.usage is not None and three.usage is not None
    assert three.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt once
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens
    receipt = (three.model_extra or {})["smallfirst"]
    assert receipt["tokens"]["completion"] == three.usage.completion_tokens


def test_seeded_choices_are_seed_plus_index(server: LiveServer) -> None:
    client = client_of(server)
    sampled = {"model": SMOL, "messages": MSG, "temperature": 1.0, "max_tokens": 24}
    three = client.chat.completions.create(**sampled, seed=7, n=3)
    texts = [c.message.content for c in three.choices]
    assert len(set(texts)) == 3
    alone = [
        client.chat.completions.create(**sampled, seed=7 + i).choices[0].message.content
        for i in range(3)
    ]
    assert texts == alone


def test_stream_interleaves_choices_by_index(server: LiveServer) -> None:
    client = client_of(server)
    body = client.chat.completions.create(
        model=SMOL, messages=MSG, temperature=1.0, seed=3, max_tokens=20, n=3
    )
    stream = client.chat.completions.create(
        model=SMOL,
        messages=MSG,
        temperature=1.0,
        seed=3,
        max_tokens=20,
        n=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts = ["", "", ""]
    finishes: dict[int, str] = {}
    chunks = list(stream)
    for chunk in chunks:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            if c.finish_reason is not None:
                finishes[c.index] = c.finish_reason
    assert texts == [c.message.content for c in body.choices]
    assert sorted(finishes) == [0, 1, 2]
    assert chunks[-1].usage is not None and body.usage is not None
    assert chunks[-1].usage.completion_tokens == body.usage.completion_tokens
    receipts = [
        c.model_extra["smallfirst"] for c in chunks if "smallfirst" in (c.model_extra or {})
    ]
    assert len(receipts) == 1  # one receipt for the request, on its last chunk
    stored = httpx.get(f"{server.url}/smallfirst/v1/receipts/{receipts[0]['receipt_id']}")
    assert stored.status_code == 200


def test_text_completions_take_n(server: LiveServer) -> None:
    reply = client_of(server).completions.create(
        model=SMOL, prompt="The sea is", temperature=0, max_tokens=8, n=2
    )
    assert [c.index for c in reply.choices] == [0, 1]
    assert reply.choices[0].text == reply.choices[1].text != ""


def test_n_above_the_cap_is_a_400(server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client_of(server).chat.completions.create(model=SMOL, messages=MSG, n=9)
    assert err.value.param == "n"


def test_n_larger_than_parallel_runs_in_groups(server: LiveServer) -> None:
    reply = client_of(server).chat.completions.create(
        model=SMOL, messages=MSG, temperature=0, max_tokens=6, n=5
    )
    assert [c.index for c in reply.choices] == [0, 1, 2, 3, 4]
    assert len({c.message.content for c in reply.choices}) == 1
