"""Function calling through a real gateway, the openai client and Qwen2.5-Coder (0.5B).

A forced call (a named function, or ``required``) is held to the function's parameter
schema by a grammar, so its arguments parse and validate (``jsonschema_rs``); ``auto`` calls
when asked to; ``none`` answers in text; the tool's result, sent back, appears in the
answer; streamed calls come as OpenAI's deltas, which the SDK's stream helper puts back
together. Both in-process engines are run. The 400s that need no model are in
tests/server/test_errors.py; the remote pass-through is in tests/engines/test_remote.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import openai
import pytest

from smallfirst.settings import Settings, UserModel
from tests.conftest import QWEN, SMOL, LiveServer, require_models

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "the city's name"},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
ADD: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}
TOOLS = [WEATHER, ADD]
ASK_WEATHER = [{"role": "user", "content": "What is the weather like in Paris, in celsius?"}]


@pytest.fixture(scope="module", params=[True, False], ids=["batched", "one-at-a-time"])
def server(
    request: pytest.FixtureRequest, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    require_models(settings, QWEN, SMOL)
    over = {"engine_batching": request.param, "parallel": 2}
    data = tmp_path_factory.mktemp("tools")
    with LiveServer(settings.model_copy(update={"data_dir": data, **over})) as live:
        yield live


def client_of(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def ask(server: LiveServer, messages: list[Any], **kw: Any) -> Any:
    return client_of(server).chat.completions.create(
        model=QWEN, messages=messages, temperature=0, max_tokens=80, tools=TOOLS, **kw
    )


def test_a_forced_call_parses_and_matches_the_schema(server: LiveServer) -> None:
    # a prompt that does not ask for the function: only the grammar makes the call valid
    answer = ask(
        server,
        [{"role": "user", "content": "Tell me a joke."}],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    calls = choice.message.tool_calls
    assert calls and {c.function.name for c in calls} == {"get_weather"}
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_")
        args = json.loads(call.function.arguments)
        assert jsonschema_rs.is_valid(WEATHER["function"]["parameters"], args), args
    assert choice.message.content is None
    # billed as any chat answer
    assert answer.model_extra["smallfirst"]["model"] == QWEN
    assert answer.usage.completion_tokens > 5


def test_required_calls_one_of_the_functions(server: LiveServer) -> None:
    answer = ask(
        server,
        [{"role": "user", "content": "What is 17 plus 25?"}],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    calls = answer.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name in ("add", "get_weather")
    schema = (ADD if calls[0].function.name == "add" else WEATHER)["function"]["parameters"]
    assert jsonschema_rs.is_valid(schema, json.loads(calls[0].function.arguments))


def test_auto_calls_when_asked_and_none_answers_in_text(server: LiveServer) -> None:
    answer = ask(server, ASK_WEATHER)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message.content
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] == "Paris"
    text = ask(server, ASK_WEATHER, tool_choice="none").choices[0]
    assert text.finish_reason in ("stop", "length") and text.message.tool_calls is None
    assert text.message.content and "<tool_call>" not in text.message.content


def test_a_round_trip_puts_the_tool_result_in_the_answer(server: LiveServer) -> None:
    first = ask(server, ASK_WEATHER, tool_choice="required", parallel_tool_calls=False)
    call = first.choices[0].message.tool_calls[0]
    history = [
        *ASK_WEATHER,
        first.choices[0].message.model_dump(exclude_none=True),
        {
            "role": "tool",
            "tool_call_id": call.id,
            "content": json.dumps({"temperature_c": 31, "sky": "thunderstorms"}),
        },
    ]
    # "none": asked to answer from the result (with "auto", the 0.5B model calls again;
    # the agent test on the 1.5B, tests/test_agents.py, goes round with "auto")
    answer = ask(server, history, tool_choice="none")
    text = answer.choices[0].message.content or ""
    assert answer.choices[0].finish_reason == "stop", answer.choices[0].message
    assert "31" in text or "thunder" in text.lower(), text


def test_streamed_calls_are_reassembled_by_the_sdk(server: LiveServer) -> None:
    client = client_of(server)
    raw = list(
        client.chat.completions.create(
            model=QWEN,
            messages=[
                {"role": "user", "content": "Add 2 and 40, and tell me the weather in Oslo."}
            ],
            temperature=0,
            max_tokens=120,
            tools=TOOLS,
            tool_choice="required",
            stream=True,
        )
    )
    deltas = [d for c in raw if c.choices for d in c.choices[0].delta.tool_calls or ()]
    firsts = [d for d in deltas if d.id is not None]
    # the first piece of each call carries id, type and name; later ones arguments only
    assert firsts and all(d.type == "function" and d.function.name for d in firsts)
    assert all(d.function.name is None for d in deltas if d.id is None)
    assert raw[-1].choices[0].finish_reason == "tool_calls"
    with client.chat.completions.stream(
        model=QWEN,
        messages=ASK_WEATHER,
        temperature=0,
        max_tokens=80,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    assert jsonschema_rs.is_valid(
        WEATHER["function"]["parameters"], json.loads(calls[0].function.arguments)
    )


def test_a_model_without_tools_is_refused_naming_one_that_has_them(server: LiveServer) -> None:
    client = client_of(server)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=SMOL, messages=ASK_WEATHER, tools=TOOLS)
    body = err.value.body
    assert isinstance(body, dict) and body["param"] == "tools"
    assert SMOL in body["message"] and QWEN in body["message"]
    # tool_choice none needs no tools support: the model answers in text
    answer = client.chat.completions.create(
        model=SMOL, messages=ASK_WEATHER, tools=TOOLS, tool_choice="none", max_tokens=5
    )
    assert answer.choices[0].message.content


def test_a_remote_model_passes_tools_through(
    server: LiveServer, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A second gateway in front of the first, which it knows as a remote model: tools,
    choice and history go upstream as sent, and the upstream's calls come back, streamed or
    not (no grammar or parsing of its own on the way)."""
    remote = UserModel(name="qwen-remote", base_url=server.url + "/v1", model_id=QWEN)
    front_settings = settings.model_copy(
        update={"data_dir": tmp_path_factory.mktemp("front"), "models": (remote,)}
    )
    with LiveServer(front_settings) as front:
        client = client_of(front)
        forced = {"type": "function", "function": {"name": "add"}}
        messages = [{"role": "user", "content": "What is 2 plus 40?"}]
        answer = client.chat.completions.create(
            model="qwen-remote", messages=messages, temperature=0, max_tokens=60,
            tools=TOOLS, tool_choice=forced,
        )  # fmt: skip
        call = answer.choices[0].message.tool_calls[0]
        assert answer.choices[0].finish_reason == "tool_calls" and call.function.name == "add"
        assert jsonschema_rs.is_valid(
            ADD["function"]["parameters"], json.loads(call.function.arguments)
        )
        assert answer.model_extra["smallfirst"]["model"] == "qwen-remote"
        with client.chat.completions.stream(
            model="qwen-remote", messages=messages, temperature=0, max_tokens=60,
            tools=TOOLS, tool_choice=forced,
        ) as stream:  # fmt: skip
            final = stream.get_final_completion()
        streamed = final.choices[0].message.tool_calls[0]
        assert streamed.function.name == "add" and streamed.id.startswith("call_")
        assert jsonschema_rs.is_valid(
            ADD["function"]["parameters"], json.loads(streamed.function.arguments)
        )


def test_auto_chooses_only_among_models_that_call_tools(server: LiveServer) -> None:
    """``auto`` leaves SmolLM2 out of a request with tools, and the route says why."""
    answer = client_of(server).chat.completions.create(
        model="auto", messages=ASK_WEATHER, tools=TOOLS, tool_choice="required", max_tokens=60
    )
    route = answer.model_extra["smallfirst"]["route"]
    assert answer.model != SMOL and answer.choices[0].message.tool_calls
    assert route["excluded"][SMOL] == "does not call tools", route
