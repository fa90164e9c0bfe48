"""The Responses <-> chat translation, as functions over dicts (no model, no server).

Requests: ``input`` items, ``instructions``, tools, ``tool_choice`` and ``text.format`` map
onto OpenAI's chat wire format, and what needs stored state is refused naming its
parameter (each refusal is checked on the wire, in tests/server/test_responses_api.py).
Answers: chat bodies and chunk streams (text, tool calls, a length cut, an
error) become Responses objects and events that the openai SDK's own types accept. The
chat answers here are fakes in OpenAI's chat shape, including tool calls, which the chat
path serves once function calling lands; the same translation runs end to end in
tests/server/test_responses_api.py.
"""

from __future__ import annotations

import json
from typing import Any

import openai.types.responses as sdk
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from pydantic import TypeAdapter

from smallfirst.errors import InvalidRequestError
from smallfirst.server.responses_api import as_chat
from smallfirst.server.responses_input import ResponsesRequest
from smallfirst.server.responses_output import ResponseStream, echo, response_body

pytestmark = pytest.mark.fast

EVENTS: TypeAdapter[Any] = TypeAdapter(sdk.ResponseStreamEvent)
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}
RECEIPT = {"receipt_id": "chatcmpl-abc", "model": "m"}


def chat_of(**body: Any) -> dict[str, Any]:
    return ResponsesRequest.model_validate({"model": "m", **body}).to_chat()


# --- requests ---------------------------------------------------------------------------------


def test_a_string_is_one_user_message_and_instructions_lead_as_system() -> None:
    chat = chat_of(input="Hi", instructions="Be brief.", max_output_tokens=5, temperature=0)
    assert chat == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
        "max_completion_tokens": 5,
        "temperature": 0,
    }
    streamed = chat_of(input="Hi", stream=True)
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}


def fc(call_id: str, arguments: str) -> dict[str, Any]:
    """A Responses ``function_call`` item."""
    return {
        "type": "function_call",
        "call_id": call_id,
        "name": "get_weather",
        "arguments": arguments,
    }


def tc(call_id: str, arguments: str) -> dict[str, Any]:
    """The chat ``tool_calls`` entry it becomes."""
    function = {"name": "get_weather", "arguments": arguments}
    return {"id": call_id, "type": "function", "function": function}


def test_items_map_to_messages_tool_calls_and_tool_results() -> None:
    parts = [{"type": "input_text", "text": "Weather"}, {"type": "input_text", "text": " in Oslo?"}]
    items = [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": parts},
        fc("c1", '{"city":"Oslo"}'),
        fc("c2", '{"city":"Bergen"}'),
        {"type": "function_call_output", "call_id": "c1", "output": "rain"},
        {"type": "function_call_output", "call_id": "c2", "output": [parts[0]]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Rain in Oslo."}]},
        {"role": "assistant", "content": "Checking."},
        fc("c3", "{}"),
    ]
    assert chat_of(input=items)["messages"] == [
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [tc("c1", '{"city":"Oslo"}'), tc("c2", '{"city":"Bergen"}')],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "rain"},
        {"role": "tool", "tool_call_id": "c2", "content": "Weather"},
        {"role": "assistant", "content": "Rain in Oslo."},
        # the calls of a turn join the text before them in one assistant message
        {"role": "assistant", "content": "Checking.", "tool_calls": [tc("c3", "{}")]},
    ]


def test_function_tools_and_tool_choice_take_chat_shape() -> None:
    chat = chat_of(input="x", tools=[TOOL], tool_choice="required", parallel_tool_calls=False)
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {k: v for k, v in TOOL.items() if k != "type"},
        }
    ]
    assert chat["tool_choice"] == "required" and chat["parallel_tool_calls"] is False
    named = chat_of(
        input="x", tools=[TOOL], tool_choice={"type": "function", "name": "get_weather"}
    )
    assert named["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_text_format_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}
    chat = chat_of(input="x", text={"format": fmt})
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }
    assert chat_of(input="x", text={"format": {"type": "json_object"}})["response_format"] == {
        "type": "json_object"
    }
    with pytest.raises(InvalidRequestError) as missing:
        chat_of(input="x", text={"format": {"type": "json_schema", "name": "thing"}})
    assert missing.value.param == "text.format.schema"
    # and the chat request validates, its grammar built from the schema
    request = ResponsesRequest.model_validate({"model": "m", "input": "x", "text": {"format": fmt}})
    assert as_chat(request).response_format is not None


def test_what_a_stateless_server_accepts() -> None:
    for body in (
        {"store": False},
        {"reasoning": {"effort": None}},
        {"reasoning": {"effort": "none"}},
        {"truncation": "disabled"},
        {"include": []},
        {"background": False},
        {"metadata": {"k": "v"}, "user": "u", "some_newer_option": 1},
    ):
        assert chat_of(input="x", **body)["messages"] == [{"role": "user", "content": "x"}]


# --- answers ------------------------------------------------------------------------------------


def chat_body(message: dict[str, Any], finish: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
        "smallfirst": RECEIPT,
    }


USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_a_text_answer_is_a_message_item_with_usage_and_receipt() -> None:
    options = echo({"model": "m", "input": "x", "instructions": "Be brief."})
    usage = {**USAGE, "prompt_tokens_details": {"cached_tokens": 4}}
    body = response_body(chat_body({"role": "assistant", "content": "Hi."}, "stop", usage), options)
    parsed = sdk.Response.model_validate(body)  # the SDK's own type takes it
    assert parsed.id == "resp_abc" and parsed.status == "completed"
    assert parsed.output_text == "Hi." and parsed.instructions == "Be brief."
    assert body["usage"] == {
        "input_tokens": 7,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 10,
    }
    assert body["smallfirst"] == RECEIPT and body["store"] is False
    assert parsed.tool_choice == "auto" and parsed.text.format.type == "text"  # type: ignore[union-attr]


def test_a_length_cut_is_incomplete() -> None:
    chat = chat_body({"role": "assistant", "content": "Once upon"}, "length", USAGE)
    body = response_body(chat, echo({"max_output_tokens": 3}))
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete" and body["max_output_tokens"] == 3
    sdk.Response.model_validate(body)


def test_tool_calls_become_function_call_items() -> None:
    calls = [
        {**tc("call_1", '{"city":"Oslo"}')},
        {**tc("call_2", '{"city":"Rome"}')},
    ]
    message = {"role": "assistant", "content": None, "tool_calls": calls}
    body = response_body(chat_body(message, "tool_calls", USAGE), echo({"tools": [TOOL]}))
    parsed = sdk.Response.model_validate(body)
    assert [o.type for o in parsed.output] == ["function_call", "function_call"]
    first = parsed.output[0]
    assert isinstance(first, sdk.ResponseFunctionToolCall)
    assert (first.call_id, first.name, json.loads(first.arguments)) == (
        "call_1",
        "get_weather",
        {"city": "Oslo"},
    )
    assert first.id is not None and first.id.startswith("fc_") and parsed.status == "completed"
    assert body["tools"] == [TOOL]
    # text before the calls is its own message item, first
    said = response_body(chat_body({**message, "content": "Let me look."}, "tool_calls", USAGE), {})
    assert [o["type"] for o in said["output"]] == ["message", "function_call", "function_call"]


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk() -> dict[str, Any]:
    return {**chunk({}), "choices": [], "usage": USAGE, "smallfirst": RECEIPT}


def run(
    chunks: list[dict[str, Any]], options: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    stream = ResponseStream(options or echo({}))
    events = [e for c in chunks for e in stream.feed(c)] + stream.finish()
    for event in events:
        EVENTS.validate_python(event)  # each is one of the SDK's event types
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_a_text_stream_is_framed_as_openai_frames_it() -> None:
    events = run(
        [
            chunk({"role": "assistant"}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({"content": ""}, "stop"),
            usage_chunk(),
        ]
    )
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[6]["text"] == "Hello" and events[0]["response"]["status"] == "in_progress"
    final = sdk.Response.model_validate(events[-1]["response"])
    assert final.output_text == "Hello" and final.usage is not None
    assert final.usage.total_tokens == 10 and events[-1]["response"]["smallfirst"] == RECEIPT
    item_ids = {e["item_id"] for e in events if "item_id" in e}
    assert item_ids == {final.output[0].id}


def test_streamed_tool_calls_arrive_as_function_call_events() -> None:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return chunk({"tool_calls": [{"index": index, **fields}]})

    events = run(
        [
            chunk({"role": "assistant"}),
            call(0, id="call_1", type="function", function={"name": "get_weather"}),
            call(0, function={"arguments": '{"city":'}),
            call(0, function={"arguments": '"Oslo"}'}),
            call(1, id="call_2", type="function", function={"name": "get_time", "arguments": "{}"}),
            chunk({}, "tool_calls"),
            usage_chunk(),
        ]
    )  # fmt: skip
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2]["item"]["call_id"] == "call_1" and events[2]["item"]["arguments"] == ""
    assert events[7]["arguments"] == '{"city":"Oslo"}' and events[9]["arguments"] == "{}"
    final = sdk.Response.model_validate(events[-1]["response"])
    names = [
        (o.call_id, o.name) for o in final.output if isinstance(o, sdk.ResponseFunctionToolCall)
    ]
    assert names == [("call_1", "get_weather"), ("call_2", "get_time")]
    # the SDK's own stream helper (client.responses.stream) reassembles them
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=omit)
    for event in events:
        state.handle_event(EVENTS.validate_python(event))
    assembled = state._completed_response
    assert assembled is not None
    calls = [o for o in assembled.output if o.type == "function_call"]
    assert [(c.call_id, json.loads(c.arguments)) for c in calls] == [
        ("call_1", {"city": "Oslo"}),
        ("call_2", {}),
    ]


def test_a_length_cut_stream_ends_incomplete() -> None:
    events = run(
        [chunk({"role": "assistant"}), chunk({"content": "Once"}, "length"), usage_chunk()]
    )
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_an_error_mid_stream_is_an_error_event_and_the_end() -> None:
    stream = ResponseStream(echo({}))
    events = stream.feed(chunk({"role": "assistant"})) + stream.feed(chunk({"content": "Hi"}))
    wire = {"message": "engine died", "type": "server_error", "param": None, "code": "engine_error"}
    error = {"error": wire}
    events += stream.feed(error)
    assert events[-1] == {
        "type": "error",
        "sequence_number": len(events) - 1,
        "code": "engine_error",
        "message": "engine died",
        "param": None,
    }
    EVENTS.validate_python(events[-1])
    assert stream.feed(chunk({"content": "more"})) == [] and stream.finish() == []


def test_an_empty_answer_is_an_empty_message() -> None:
    events = run([chunk({"role": "assistant"}), chunk({}, "stop"), usage_chunk()])
    final = sdk.Response.model_validate(events[-1]["response"])
    assert final.output_text == "" and len(final.output) == 1
