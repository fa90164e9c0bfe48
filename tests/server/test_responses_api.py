"""``/v1/responses`` through a real gateway on loopback, driven by the openai client.

The model tests run SmolLM2-135M (the wire, not competence): text and message input, a
greedy answer equal token for token to the same chat request's (so ``instructions``
reached the prompt as its system message), the SDK's stream, a ``max_output_tokens`` cut,
usage and the receipt (endpoint ``responses``). ``text.format`` json_schema runs on
Qwen2.5-0.5B, whose output must parse and validate. The refusals, the response cache and a
stream that breaks run in the fast lane on a gateway whose only model is a loopback stub.
Tool calls are translated in tests/server/test_responses_translation.py, and run end to end
on Qwen2.5-0.5B here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import openai
import pytest
from pydantic import BaseModel

from smallfirst.settings import Settings, UserModel
from smallfirst.store.keys import KeySpec
from smallfirst.stub_upstream import REPLY, StubUpstream
from tests.conftest import QWEN, SMOL, LiveServer, require_models

QUESTION = "What is 2+2?"  # SmolLM2 answers it in about 11 tokens, greedy
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
CLOSING = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def sdk(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def stored_endpoint(server: LiveServer, receipt_id: str) -> str:
    return str(server.app.state.store.get(receipt_id).endpoint)


# --- on SmolLM2 -----------------------------------------------------------------------------


def test_text_input_answers_with_usage_and_receipt(gateway: LiveServer) -> None:
    raw = sdk(gateway).responses.with_raw_response.create(
        model=SMOL, input=QUESTION, max_output_tokens=24, temperature=0
    )
    r = raw.parse()
    assert r.object == "response" and r.model == SMOL
    assert r.id.startswith("resp_") and r.output_text.strip()
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.usage is not None and r.usage.input_tokens > 5
    assert 0 < r.usage.output_tokens <= 24
    assert r.status == ("incomplete" if r.usage.output_tokens == 24 else "completed")
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    receipt = (r.model_extra or {})["smallfirst"]
    assert receipt["model"] == SMOL and receipt["energy"]["energy_j"] > 0
    assert receipt["tokens"] == {
        "prompt": r.usage.input_tokens,
        "completion": r.usage.output_tokens,
    }
    assert raw.headers["x-smallfirst-receipt-id"] == receipt["receipt_id"]
    assert r.id == "resp_" + receipt["receipt_id"].removeprefix("chatcmpl-")
    assert stored_endpoint(gateway, receipt["receipt_id"]) == "responses"
    # routed as chat is: auto (without a fitted router here) is the default model
    auto = sdk(gateway).responses.create(model="auto", input=QUESTION, max_output_tokens=2)
    assert auto.model == SMOL and (auto.model_extra or {})["smallfirst"]["policy"] is not None


def test_messages_and_instructions_answer_as_the_same_chat_request(
    gateway: LiveServer, client: openai.OpenAI
) -> None:
    """Greedy: the same prompt gives the same tokens, so instructions became the system
    message, ahead of the history, as chat would have it."""
    history: list[Any] = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Hello Ada!"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "What is my name?"}]},
    ]
    system = "You are a pirate. Answer in one short sentence."
    r = sdk(gateway).responses.create(
        model=SMOL, instructions=system, input=history, max_output_tokens=30, temperature=0
    )
    chat = client.chat.completions.create(
        model=SMOL,
        messages=[
            {"role": "system", "content": system},
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Hello Ada!"},
            {"role": "user", "content": "What is my name?"},
        ],
        max_tokens=30,
        temperature=0,
    )
    assert r.output_text == chat.choices[0].message.content
    assert r.usage is not None and chat.usage is not None
    assert r.usage.input_tokens == chat.usage.prompt_tokens


def test_a_stream_through_the_sdk(gateway: LiveServer) -> None:
    client = sdk(gateway)
    ask: dict[str, Any] = {
        "model": SMOL,
        "input": QUESTION,
        "max_output_tokens": 24,
        "temperature": 0,
    }
    whole = client.responses.create(**ask)
    with client.responses.stream(**ask) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == TEXT_EVENTS and kinds[-4:] == CLOSING
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == whole.output_text  # greedy: the same text
    assert final.usage is not None and whole.usage is not None
    assert final.usage.output_tokens == whole.usage.output_tokens
    receipt = (final.model_extra or {})["smallfirst"]
    assert receipt["model"] == SMOL and final.id == "resp_" + receipt["receipt_id"][9:]
    assert stored_endpoint(gateway, receipt["receipt_id"]) == "responses"
    # stream=True without the helper: the same events
    raw = [e.type for e in client.responses.create(**ask, stream=True)]
    assert raw == kinds


def test_max_output_tokens_cut_is_incomplete(gateway: LiveServer) -> None:
    client = sdk(gateway)
    long = "Write a long story about a dragon."
    r = client.responses.create(model=SMOL, input=long, max_output_tokens=3, temperature=0)
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.usage is not None and r.usage.output_tokens == 3
    events = list(
        client.responses.create(
            model=SMOL, input=long, max_output_tokens=3, temperature=0, stream=True
        )
    )
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.output_text == r.output_text


# --- text.format json_schema on Qwen2.5-0.5B --------------------------------------------------

CITY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "country": {"type": "string", "maxLength": 40},
        "population": {"type": "integer"},
        "kind": {"enum": ["capital", "town"]},
    },
    "required": ["name", "country", "population", "kind"],
    "additionalProperties": False,
}


class City(BaseModel):
    name: str
    country: str
    capital: bool


@pytest.fixture(scope="module")
def qwen(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    require_models(settings, QWEN)
    data = tmp_path_factory.mktemp("responses-qwen")
    with LiveServer(settings.model_copy(update={"data_dir": data})) as live:
        yield live


def test_json_schema_output_parses_and_validates(qwen: LiveServer) -> None:
    client = sdk(qwen)
    fmt: Any = {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}
    ask: dict[str, Any] = {
        "model": QWEN,
        "instructions": "You reply with JSON only.",
        "input": "Describe Paris: name, country, population and whether it is a capital.",
        "max_output_tokens": 120,
        "temperature": 0,
        "text": {"format": fmt},
    }
    r = client.responses.create(**ask)
    assert r.status == "completed", r.output_text
    city = json.loads(r.output_text)
    assert jsonschema_rs.validator_for(CITY).is_valid(city), city
    assert r.text is not None and r.text.format is not None and r.text.format.type == "json_schema"
    with client.responses.stream(**ask) as stream:
        streamed = stream.get_final_response().output_text
    assert json.loads(streamed) == city  # greedy, with the same grammar
    parsed = client.responses.parse(
        model=QWEN,
        input="Is Paris a capital? Give its name, country and whether it is a capital.",
        max_output_tokens=80,
        temperature=0,
        text_format=City,
    )
    assert isinstance(parsed.output_parsed, City), parsed.output_text


ADD: Any = {
    "type": "function",
    "name": "add",
    "description": "Add two integers.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
    "strict": True,
}


def test_function_tools_call_and_take_the_result(qwen: LiveServer) -> None:
    """A forced call through the chat path's function calling: a ``function_call`` item
    whose arguments validate; its ``function_call_output`` sent back is answered in text;
    streamed, the SDK puts the call back together from the argument events."""
    client = sdk(qwen)
    ask: dict[str, Any] = {
        "model": QWEN,
        "input": "What is 19 plus 23?",
        "tools": [ADD],
        "tool_choice": {"type": "function", "name": "add"},
        "max_output_tokens": 60,
        "temperature": 0,
    }
    r = client.responses.create(**ask)
    calls = [item for item in r.output if item.type == "function_call"]
    assert r.status == "completed" and len(calls) >= 1, r.output
    call = calls[0]
    args = json.loads(call.arguments)
    assert call.name == "add" and jsonschema_rs.is_valid(ADD["parameters"], args), args
    with client.responses.stream(**ask) as stream:
        final = stream.get_final_response()
    streamed = [item for item in final.output if item.type == "function_call"]
    assert streamed and streamed[0].name == "add"
    assert jsonschema_rs.is_valid(ADD["parameters"], json.loads(streamed[0].arguments))
    # the result goes back as a function_call_output; "none": answer from it in text
    answer = client.responses.create(
        model=QWEN,
        input=[
            {"role": "user", "content": "What is 19 plus 23?"},
            {"type": "function_call", "call_id": call.call_id, "name": "add",
             "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "4242"},
        ],
        tools=[ADD],
        tool_choice="none",
        max_output_tokens=40,
        temperature=0,
    )  # fmt: skip
    assert "4242" in answer.output_text, answer.output_text


# --- refused before a model runs, the cache, a broken stream: on a stub --------------------------


@pytest.fixture(scope="module")
def stub() -> Iterator[StubUpstream]:
    with StubUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def bare(
    settings: Settings, stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A gateway whose model is a loopback stub, with the response cache on."""
    update = {
        "data_dir": tmp_path_factory.mktemp("responses"),
        "models": (UserModel(name="stub", base_url=stub.url, model_id="stub"),),
        "response_cache": True,
    }
    with LiveServer(settings.model_copy(update=update)) as live:
        yield live


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"conversation": "conv_123"}, "conversation"),
    ({"background": True}, "background"),
    ({"store": True}, "store"),
    ({"prompt": {"id": "pmpt_123"}}, "prompt"),
    ({"include": ["file_search_call.results"]}, "include"),
    ({"truncation": "auto"}, "truncation"),
    ({"reasoning": {"effort": "medium"}}, "reasoning"),
    ({"tools": [{"type": "web_search"}]}, "tools.[0]"),
    ({"tools": [{"type": "computer_use_preview", "display_width": 1, "display_height": 1,
                 "environment": "linux"}]}, "tools.[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]},
     "input.[0].content.[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]},
     "input.[0].content.[0].type"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.[0]"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input.[0].type"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input.[0].role"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "input.[0].arguments"),
    ({"input": []}, "input"),
    ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"temperature": 3}, "temperature"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object",
      "properties": {"n": {"type": "integer", "minimum": 1}}}}}}, "text.format"),
]  # fmt: skip


@pytest.mark.fast
@pytest.mark.parametrize(("body", "param"), REFUSED, ids=[p for _, p in REFUSED])
def test_refusals_name_the_parameter(bare: LiveServer, body: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(bare).responses.create(**{"model": "stub", "input": "hi", **body})
    error = refused.value.body
    assert isinstance(error, dict) and refused.value.status_code == 400
    assert error["param"] == param and error["type"] == "invalid_request_error", error
    if param in ("previous_response_id", "store", "conversation"):
        assert "stateless" in error["message"]


@pytest.mark.fast
def test_an_unknown_model_is_a_404(bare: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        sdk(bare).responses.create(model="no-such-model", input="hi")
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]


@pytest.mark.fast
def test_the_stub_answers_body_and_stream(bare: LiveServer, stub: StubUpstream) -> None:
    client = sdk(bare)
    r = client.responses.create(model="stub", input="hello there", max_output_tokens=4)
    assert r.output_text == " ".join(REPLY.split(" ")[:4]) and r.status == "incomplete"
    with client.responses.stream(model="stub", input="hello there") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[:4] == TEXT_EVENTS and kinds[-4:] == CLOSING
    assert final.output_text == REPLY and final.status == "completed"


@pytest.mark.fast
def test_greedy_requests_share_the_response_cache(bare: LiveServer) -> None:
    """The same path as chat: a repeated greedy request is answered from the cache, with a
    receipt of its own that says responses."""
    ask: dict[str, Any] = {"model": "stub", "input": "cache me", "temperature": 0}
    client = sdk(bare)
    first = client.responses.with_raw_response.create(**ask)
    again = client.responses.with_raw_response.create(**ask)
    assert first.headers["x-smallfirst-cache"] == "miss"
    assert again.headers["x-smallfirst-cache"] == "hit"
    assert again.parse().output_text == first.parse().output_text == REPLY
    hit = again.headers["x-smallfirst-receipt-id"]
    assert hit != first.headers["x-smallfirst-receipt-id"]
    assert stored_endpoint(bare, hit) == "responses"
    with client.responses.stream(**ask) as stream:
        assert stream.get_final_response().output_text == REPLY


@pytest.mark.fast
def test_a_stream_that_breaks_ends_with_an_error_event(
    bare: LiveServer, stub: StubUpstream
) -> None:
    stub.script = ["break"]
    with httpx.stream(
        "POST",
        bare.url + "/v1/responses",
        json={"model": "stub", "input": "x", "stream": True},
        timeout=60,
    ) as r:
        assert r.status_code == 200
        receipt_id = r.headers["x-smallfirst-receipt-id"]
        lines = [line for line in r.iter_lines() if line]
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    names = [line[7:] for line in lines if line.startswith("event: ")]
    assert names == [e["type"] for e in events] and names[-1] == "error"
    assert "response.completed" not in names and events[-1]["message"]
    assert bare.app.state.store.get(receipt_id).status == "error"
    assert stored_endpoint(bare, receipt_id) == "responses"


@pytest.mark.fast
def test_api_keys_admit_responses_as_they_admit_chat(
    settings: Settings, stub: StubUpstream, tmp_path: Path
) -> None:
    update = {
        "data_dir": tmp_path,
        "models": (UserModel(name="stub", base_url=stub.url, model_id="stub"),),
    }
    with LiveServer(settings.model_copy(update=update)) as keyed:
        _, secret = keyed.app.state.keys.create(KeySpec(name="agent"))
        _, narrow = keyed.app.state.keys.create(KeySpec(name="narrow", models=("other*",)))

        def ask(key: str) -> Any:
            client = openai.OpenAI(base_url=keyed.url + "/v1", api_key=key, max_retries=0)
            return client.responses.with_raw_response.create(model="stub", input="hi")

        with pytest.raises(openai.AuthenticationError):
            ask("not-a-key")
        with pytest.raises(openai.PermissionDeniedError) as denied:
            ask(narrow)
        assert denied.value.body["code"] == "model_not_allowed"  # type: ignore[index]
        ok = ask(secret)
        receipt = keyed.app.state.store.get(ok.headers["x-smallfirst-receipt-id"])
        assert (receipt.endpoint, receipt.key_name) == ("responses", "agent")


@pytest.mark.fast
def test_a_client_that_hangs_up_mid_stream_cancels_the_request(
    bare: LiveServer, stub: StubUpstream
) -> None:
    """The bridge closes the chat stream under it: the upstream request ends and the
    receipt says cancelled."""
    stub.token_delay_s = 0.2  # 14 words: about 3 s, if nobody hangs up
    try:
        with httpx.stream(
            "POST",
            bare.url + "/v1/responses",
            json={"model": "stub", "input": "slowly", "stream": True},
            timeout=60,
        ) as r:
            receipt_id = r.headers["x-smallfirst-receipt-id"]
            for line in r.iter_lines():
                if "response.output_text.delta" in line:
                    break
        deadline = time.monotonic() + 10
        row = None
        while time.monotonic() < deadline:
            row = bare.app.state.store.get(receipt_id)
            if row is not None:
                break
            time.sleep(0.05)
        assert row is not None and (row.status, row.endpoint) == ("cancelled", "responses")
    finally:
        stub.token_delay_s = 0.0
