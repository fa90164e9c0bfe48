"""The tool-call grammar and parser (no model): grammars llama.cpp parses, for the calls the
request allows; ``<tool_call>`` blocks cut anywhere by the stream still parse; what is not a
call stays content; the wrapped stream ends a reply that called with ``tool_calls``."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator

import pytest

from smallfirst.engines.base import Chunk, Tools
from smallfirst.engines.grammars import _check_parses
from smallfirst.engines.toolcalls import (
    TRIGGERS,
    ToolCallParser,
    call_grammar,
    tool_call_chunks,
    tool_grammar,
)
from smallfirst.errors import UnsupportedError

pytestmark = pytest.mark.fast

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
NO_PARAMETERS = {"type": "function", "function": {"name": "now"}}

REPLY = (
    "Let me check.\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
)


def tools(*defs: object, **kw: object) -> Tools:
    return Tools(definitions=json.dumps(list(defs)), **kw)  # type: ignore[arg-type]


def test_grammar_allows_the_offered_functions_and_parses_in_llama_cpp() -> None:
    gbnf = tool_grammar(tools(WEATHER, ADD, NO_PARAMETERS))
    _check_parses(gbnf, "tools")
    assert gbnf.startswith("root ::= tool-call (")  # several calls by default
    assert '"\\"get_weather\\""' in gbnf and '"\\"add\\""' in gbnf and '"\\"now\\""' in gbnf
    # the converter's own root is renamed, not left as a second root
    assert gbnf.count("root ::=") == 1


def test_named_function_and_one_call_only() -> None:
    gbnf = tool_grammar(tools(WEATHER, ADD, choice="function", function="add", parallel=False))
    _check_parses(gbnf, "tools")
    assert '"\\"add\\""' in gbnf and "get_weather" not in gbnf
    assert gbnf.splitlines()[0] == "root ::= tool-call"


def test_required_is_enforced_from_the_start_and_auto_lazily() -> None:
    grammar, triggers = call_grammar(tools(ADD, choice="required"))
    assert grammar is not None and triggers == ()
    assert "tool-call-json (" not in grammar  # the template's tags, always
    grammar, triggers = call_grammar(tools(ADD))
    assert grammar is not None and triggers == TRIGGERS
    _check_parses(grammar, "tools")
    # lazily: a tag, or a reply opening as a bare call (the grammar then starts at "{"),
    # its braces doubled as in Qwen2.5's template's example or not
    assert grammar.startswith('root ::= tool-call ("\\n" tool-call)* | bare-call (')
    assert 'bare-call ::= tool-call-json | "{" tool-call-json "}"' in grammar
    assert re.search(TRIGGERS[0], 'Sure. <tool_call>\n{"na')
    bare = re.fullmatch(TRIGGERS[1], '\n {"name": "add"')
    assert bare is not None and bare.start(1) == 2
    doubled = re.fullmatch(TRIGGERS[1], '{{"name": "add"')
    assert doubled is not None and doubled.start(1) == 0
    assert not re.fullmatch(TRIGGERS[1], 'I will {"name"')
    assert call_grammar(tools(ADD), enforce_auto=False) == (None, ())
    assert call_grammar(tools(ADD, choice="none")) == (None, ())


# bench/tool_call_check.py: both Qwen2.5-Coder models write most of their calls under
# tool_choice auto in a code fence; the parser takes them, but the lazy grammar never holds them
FENCED_CALL = '```json\n{\n  "name": "add",\n  "arguments": {\n    "a": 1'


def test_the_lazy_grammar_takes_hold_of_a_call_in_a_code_fence() -> None:
    _, triggers = call_grammar(tools(ADD))
    # llama.cpp matches an anchored (^...$) trigger against the whole text so far, another
    # anywhere in it; the grammar must then start where the JSON call does
    found = [
        re.fullmatch(t, FENCED_CALL)
        if t.startswith("^") and t.endswith("$")
        else re.search(t, FENCED_CALL)
        for t in triggers
    ]
    assert any(
        m is not None and FENCED_CALL[m.start(m.lastindex or 0) :].startswith("{") for m in found
    )


def test_a_schema_the_grammar_cannot_enforce() -> None:
    ranged = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object", "minProperties": 1}},
    }
    with pytest.raises(UnsupportedError) as err:
        call_grammar(tools(ranged, choice="required"))
    assert err.value.param == "tools" and "minProperties" in str(err.value)
    # auto: the model may still call, unconstrained
    assert call_grammar(tools(ranged)) == (None, ())


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 7, 11])
def test_parser_reads_calls_cut_anywhere(cut: int) -> None:
    parser = ToolCallParser()
    content, calls = [], []
    for i in range(0, len(REPLY), cut):
        text, done = parser.feed(REPLY[i : i + cut])
        content.append(text)
        calls.extend(done)
    text, done = parser.finish()
    content.append(text)
    calls.extend(done)
    assert "".join(content) == "Let me check."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("add", {"a": 1, "b": 2}),
    ]
    assert all(c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id
    assert parser.calls == 2


def test_what_is_not_a_call_stays_content() -> None:
    parser = ToolCallParser()
    text, calls = parser.feed("a <tool_call>not json</tool_call> b <tool")
    rest, more = parser.finish()
    assert calls == [] and more == [] and parser.calls == 0
    assert text + rest == "a <tool_call>not json</tool_call> b <tool"


def test_plain_text_keeps_its_whitespace_and_an_unclosed_call_parses() -> None:
    parser = ToolCallParser()
    assert parser.feed("one\n\ntwo  ")[0] == "one\n\ntwo"
    assert parser.finish() == ("  ", [])
    parser = ToolCallParser()
    parser.feed('<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}')
    text, calls = parser.finish()
    assert text == "" and [c.name for c in calls] == ["add"]


@pytest.mark.parametrize(
    "reply",
    [
        '{"name": "add", "arguments": {"a": 1, "b": 2}}',
        '```json\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n```',
        '{"name": "add", "arguments": {"a": 1, "b": 2}}\n{"name": "now", "arguments": {}}',
        # the doubled braces of Qwen2.5's template's example, as Qwen2.5-Coder-1.5B copies
        # them in an agent's second turn (tests/test_agents.py)
        '{{"name": "add", "arguments": {"a": 1, "b": 2}}}',
        '{{"name": "add", "arguments": {"a": 1, "b": 2}}}\n{{"name": "now", "arguments": {}}}',
    ],
)
def test_bare_json_calls_without_tags(reply: str) -> None:
    parser = ToolCallParser()
    for i in range(0, len(reply), 4):
        assert parser.feed(reply[i : i + 4]) == ("", [])  # held: it may be calls
    text, calls = parser.finish()
    assert text == "" and calls and calls[0].name == "add"
    assert json.loads(calls[0].arguments) == {"a": 1, "b": 2}


def test_a_tagged_call_in_doubled_braces() -> None:
    parser = ToolCallParser()
    text, calls = parser.feed('<tool_call>\n{{"name": "add", "arguments": {"a": 1}}}\n</tool_call>')
    assert text == "" and [(c.name, json.loads(c.arguments)) for c in calls] == [("add", {"a": 1})]


def test_a_call_of_a_function_not_offered_is_content() -> None:
    offered = frozenset({"add"})
    for reply in [
        '{"name": "get_name", "arguments": {}}',
        'Hi <tool_call>\n{"name": "synonym", "arguments": {"word": "happy"}}\n</tool_call>',
    ]:
        parser = ToolCallParser(offered)
        text, calls = parser.feed(reply)
        rest, more = parser.finish()
        assert calls == more == [] and parser.calls == 0
        assert text + rest == reply
    parser = ToolCallParser(offered)
    parser.feed('{"name": "add", "arguments": {"a": 1, "b": 2}}')
    assert [c.name for c in parser.finish()[1]] == ["add"]


def test_json_that_is_not_a_call_is_content() -> None:
    for reply in [
        '{"answer": 42}',
        '{"name": "x"} and more',
        "`code` <tool_call>oops",
        '{{"answer": 42}}',
        '{{"name": "add"}',
        "<tool_call>{{}}</tool_call>",
    ]:
        parser = ToolCallParser()
        text, calls = parser.feed(reply)
        rest, more = parser.finish()
        assert text + rest == reply and calls == more == []


async def _chunks(*chunks: Chunk) -> AsyncGenerator[Chunk, None]:
    for chunk in chunks:
        yield chunk


def test_stream_gives_deltas_and_ends_with_tool_calls() -> None:
    pieces = [REPLY[i : i + 9] for i in range(0, len(REPLY), 9)]
    source = [Chunk(text=p) for p in pieces[:-1]] + [Chunk(text=pieces[-1], finish_reason="stop")]

    async def run() -> list[Chunk]:
        return [c async for c in tool_call_chunks(_chunks(*source))]

    out = asyncio.run(run())
    assert "".join(c.text for c in out) == "Let me check."
    deltas = [d for c in out for d in c.tool_calls]
    # per call: id and name first, then the arguments
    assert [(d.index, d.id is not None, d.name) for d in deltas] == [
        (0, True, "get_weather"),
        (0, False, None),
        (1, True, "add"),
        (1, False, None),
    ]
    assert json.loads(deltas[3].arguments) == {"a": 1, "b": 2}
    assert out[-1].finish_reason == "tool_calls"
    assert [c.finish_reason for c in out[:-1]] == [None] * (len(out) - 1)


def test_stream_without_calls_and_cut_by_length() -> None:
    async def run(*chunks: Chunk) -> list[Chunk]:
        return [c async for c in tool_call_chunks(_chunks(*chunks))]

    out = asyncio.run(run(Chunk(text="Hi"), Chunk(text=" there", finish_reason="stop")))
    assert "".join(c.text for c in out) == "Hi there" and out[-1].finish_reason == "stop"
    out = asyncio.run(run(Chunk(text='<tool_call>\n{"name": "ad', finish_reason="length")))
    assert out[-1].finish_reason == "length"
    assert "".join(c.text for c in out) == '<tool_call>\n{"name": "ad'
    assert not any(c.tool_calls for c in out)
