"""Function calling on in-process models: the grammar that holds a call to its schema, and the
parser that turns the model's ``<tool_call>`` blocks into OpenAI's ``tool_calls``.

The models that call tools here (Qwen2.5's chat template, the Hermes format) write each call
as ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``. :func:`tool_grammar`
builds the GBNF for such calls from the offered functions' parameter schemas (through
:func:`~smallfirst.engines.grammars.schema_grammar`, which refuses what it cannot enforce):
from the first token for ``tool_choice`` ``required`` or a named function, and lazily for
``auto``, where the grammar takes hold only once the model itself writes ``<tool_call>``,
or opens its reply with ``{"name"``: small models (Qwen2.5-Coder-0.5B) often drop the tags,
as llama.cpp's own parser allows, and may double the braces as the template's example
does (``{{"name": ...}}``, which the 1.5B copies in an agent's turns).
:func:`tool_call_chunks` wraps an engine's stream: text outside the blocks stays content,
each complete block becomes two deltas (id and name, then the arguments), as OpenAI
streams them, and a reply that called a function ends with ``finish_reason`` ``tool_calls``.
A reply that opens with ``{`` or a code fence is held until it ends, then read as bare
calls if it is only that.

A block that is not a JSON call (possible without the grammar) is left in the content as
the model wrote it, rather than guessed at. This module renders no prompts (the chat
template does, see :mod:`.prompting`) and runs no model.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

from smallfirst.engines.base import Chunk, ToolCallDelta, Tools
from smallfirst.engines.grammars import schema_grammar
from smallfirst.errors import SmallfirstError
from smallfirst.types import ToolCall

__all__ = [
    "CALL_CLOSE",
    "CALL_OPEN",
    "TRIGGERS",
    "ToolCallParser",
    "call_grammar",
    "new_call_id",
    "tool_call_chunks",
    "tool_grammar",
]

log = logging.getLogger(__name__)

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
# lazy grammar triggers (llama.cpp's regex syntax): a tag anywhere, or a reply that opens as
# a bare JSON call, also inside a code fence (the grammar then starts at its brace); the
# Qwen2.5-Coder models fence most of their calls (bench/results/tools/findings.md)
TRIGGERS = (CALL_OPEN, r'^\s*(?:```[a-z]*\s*)?(\{\{?[ \t\r\n]{0,40}"name")[\s\S]*$')
# Whitespace between a call's JSON tokens. The converter allows one space; the models also
# pretty-print ("{\n  \"name\": ..."). A lazy grammar replays the text its trigger matched,
# and llama.cpp aborts the process (an uncaught C++ exception) on replayed text the grammar
# refuses, so every gap the trigger lets through must be one the grammar takes.
SPACE_RULE = "space ::= [ \\t\\r\\n]{0,40}"
_SPACE_LINE = re.compile(r"^space ::= .*$", re.M)
_CALL_KEYS = frozenset({"name", "arguments", "parameters"})
_DECODER = json.JSONDecoder()
_FENCE = re.compile(r"^```[a-z]*\n?|```$")
# the converter's rule names and GBNF's literals, so that its ``root`` can be renamed
_GBNF_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|[A-Za-z0-9_-]+|.', re.S)


def new_call_id() -> str:
    """An id in OpenAI's shape (``call_`` and 24 letters and digits)."""
    return "call_" + secrets.token_hex(12)


def tool_grammar(tools: Tools, *, bare: bool = False) -> str:
    """The GBNF for the calls ``tools`` allows (root rule ``root``): any offered function,
    or only the named one; one call, or several when ``parallel_tool_calls`` allows; in
    ``<tool_call>`` tags, or with ``bare`` also as bare JSON objects (what a lazy grammar
    triggered by a reply that opens with ``{"name"`` must accept).

    Raises the grammar module's 400 (``param`` ``tools``) for a parameter schema it cannot
    enforce."""
    offered: list[dict[str, Any]] = json.loads(tools.definitions)
    alternatives = [
        {
            "type": "object",
            "properties": {
                "name": {"const": f["name"]},
                "arguments": f.get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for f in (t["function"] for t in offered)
        if tools.function is None or f["name"] == tools.function
    ]
    schema = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
    body = _rename_root(schema_grammar(schema, param="tools"), "tool-call-json")
    body = _loosen(_SPACE_LINE.sub(lambda _: SPACE_RULE, body))
    # the template's "\n" around the JSON, or any short gap: a lazy grammar replays the
    # trigger's token, which in another model's vocabulary may run on past the tag
    call = f'"{CALL_OPEN}" space tool-call-json space "{CALL_CLOSE}"'
    several = tools.parallel is not False
    root = "tool-call" + (' ("\\n" tool-call)*' if several else "")
    rules = f"tool-call ::= {call}\n"
    if bare:
        root += " | bare-call" + (' ("\\n" bare-call)*' if several else "") + " fence-end?"
        # also in the doubled braces of Qwen2.5's template's example (see ``_decode``)
        rules += 'bare-call ::= tool-call-json | "{" tool-call-json "}"\n'
        # a fenced call's closing fence (its opening one comes before the trigger's group)
        rules += 'fence-end ::= "\\n"? "```"\n'
    return f"root ::= {root}\n{rules}{body}"


def call_grammar(tools: Tools, *, enforce_auto: bool = True) -> tuple[str | None, tuple[str, ...]]:
    """The request's grammar and its triggers (see :class:`~.base.Sampling`).

    ``required`` and a named function: the calls' grammar from the first token (a schema it
    cannot enforce is a 400). ``auto``: the same grammar, lazily, from the model's own
    ``<tool_call>`` or a reply that opens with ``{"name"``; unconstrained when
    ``enforce_auto`` is off or a schema cannot be enforced (the model may still call; its
    call is parsed, not guaranteed)."""
    if tools.choice in ("required", "function"):
        return tool_grammar(tools), ()
    if tools.choice != "auto" or not enforce_auto:
        return None, ()
    try:
        return tool_grammar(tools, bare=True), TRIGGERS
    except SmallfirstError as exc:
        log.info("tool_choice auto runs unconstrained: %s", exc)
        return None, ()


def _loosen(gbnf: str) -> str:
    """``gbnf`` with whitespace allowed before each closing brace and bracket, as pretty
    printed JSON has it (the converter allows none after an enum or const value)."""
    return "".join("space " + t if t in ('"}"', '"]"') else t for t in _GBNF_TOKEN.findall(gbnf))


def _rename_root(gbnf: str, name: str) -> str:
    """``gbnf`` with its rule ``root`` (and every reference to it) called ``name``."""
    return "".join(name if t == "root" else t for t in _GBNF_TOKEN.findall(gbnf))


class ToolCallParser:
    """One choice's output, fed as it streams: content text and complete calls."""

    def __init__(self, names: frozenset[str] | None = None) -> None:
        # the offered functions: a call of any other is content, as the model wrote it
        self.names = names
        self._buffer = ""
        self._inside = False
        self._blank = ""  # whitespace held back: dropped if calls follow or end the reply
        # None until the reply's first visible character says whether it may be bare JSON
        # calls (small models often drop the tags), which are then held to the end
        self._bare: bool | None = None
        self.calls = 0

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        """The content that is certain so far, and the calls completed by ``text``."""
        self._buffer += text
        if self._bare is None and self._buffer.strip():
            self._bare = self._buffer.lstrip().startswith(("{", "`"))
        if self._bare is not False:
            return "", []
        content: list[str] = []
        calls: list[ToolCall] = []
        while True:
            if self._inside:
                end = self._buffer.find(CALL_CLOSE)
                if end < 0:
                    break
                block, self._buffer = self._buffer[:end], self._buffer[end + len(CALL_CLOSE) :]
                self._inside = False
                call = _parse_call(block, self.names)
                if call is None:
                    content.append(self._content(CALL_OPEN + block + CALL_CLOSE))
                else:
                    calls.append(call)
                    self._blank = ""
                continue
            start = self._buffer.find(CALL_OPEN)
            if start < 0:
                keep = _partial_suffix(self._buffer, CALL_OPEN)
                content.append(self._content(self._buffer[: len(self._buffer) - keep]))
                self._buffer = self._buffer[len(self._buffer) - keep :]
                break
            content.append(self._content(self._buffer[:start]))
            self._buffer = self._buffer[start + len(CALL_OPEN) :]
            self._inside = True
        self.calls += len(calls)
        return "".join(content), calls

    def finish(self) -> tuple[str, list[ToolCall]]:
        """What is left at the end: an unclosed block that still parses is a call (a
        model that ended at ``</tool_call>``'s first token), anything else content."""
        rest, self._buffer = self._buffer, ""
        if self._bare:
            self._bare = False
            calls = _bare_calls(rest, self.names)
            if calls:
                self.calls += len(calls)
                return "", calls
            self._buffer = rest  # not calls after all: the tagged reading, then content
            text, calls = self.feed("")
            rest, last = self.finish()
            return text + rest, calls + last
        if self._inside:
            self._inside = False
            call = _parse_call(rest, self.names)
            if call is not None:
                self.calls += 1
                return "", [call]
            rest = CALL_OPEN + rest
        text = self._content(rest)
        if self.calls == 0:
            text += self._blank
        self._blank = ""
        return text, []

    def _content(self, text: str) -> str:
        """``text`` as content, with trailing whitespace held until more content follows."""
        if not text:
            return ""
        if not text.strip():
            self._blank += text
            return ""
        body = text.rstrip()
        out, self._blank = self._blank + body, text[len(body) :]
        return out


def _partial_suffix(text: str, marker: str) -> int:
    """The length of the longest end of ``text`` that begins ``marker``."""
    for k in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-k:]):
            return k
    return 0


def _bare_calls(text: str, names: frozenset[str] | None) -> list[ToolCall]:
    """A whole reply that is only JSON calls (one per object, a code fence allowed) as
    calls; [] when it is anything else."""
    body = _FENCE.sub("", text.strip()).strip()
    calls: list[ToolCall] = []
    at = 0
    while at < len(body):
        try:
            data, end = _decode(body, at)
        except ValueError:
            return []
        call = _call_of(data, names) if isinstance(data, dict) and set(data) <= _CALL_KEYS else None
        if call is None:
            return []
        calls.append(call)
        at = end
        while at < len(body) and body[at] in " \t\r\n,":
            at += 1
    return calls


def _parse_call(block: str, names: frozenset[str] | None) -> ToolCall | None:
    body = block.strip()
    try:
        data, end = _decode(body, 0)
    except ValueError:
        return None
    return _call_of(data, names) if end == len(body) else None


def _decode(body: str, at: int) -> tuple[Any, int]:
    """The JSON value that starts at ``at`` and where it ends; also a call in doubled braces
    (``{{"name": ..., "arguments": {...}}}``). Qwen2.5's chat template shows its call format
    as ``{{"name": <function-name>, ...}}`` (a Jinja string, so the braces reach the prompt
    doubled), and Qwen2.5-Coder-1.5B copies them when it writes a call without the tags: the
    lazy grammar's trigger (``{"name"``) misses such a reply, which then runs unconstrained.
    Raises ValueError when there is no JSON value there."""
    try:
        return _DECODER.raw_decode(body, at)
    except ValueError:
        if not body.startswith("{{", at):
            raise
    data, end = _DECODER.raw_decode(body, at + 1)
    if not body.startswith("}", end):
        raise ValueError("an unclosed doubled brace")
    return data, end + 1


def _call_of(data: Any, names: frozenset[str] | None) -> ToolCall | None:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    if names is not None and data["name"] not in names:
        return None  # OpenAI never names a function it was not offered
    arguments = data.get("arguments", data.get("parameters", {}))
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(id=new_call_id(), name=data["name"], arguments=arguments)


def _deltas(first: int, calls: list[ToolCall]) -> list[tuple[ToolCallDelta, ...]]:
    out: list[tuple[ToolCallDelta, ...]] = []
    for k, call in enumerate(calls, start=first):
        out.append((ToolCallDelta(k, id=call.id, name=call.name),))
        out.append((ToolCallDelta(k, arguments=call.arguments),))
    return out


async def tool_call_chunks(
    stream: AsyncGenerator[Chunk, None], n: int = 1, names: frozenset[str] | None = None
) -> AsyncGenerator[Chunk, None]:
    """``stream`` with each choice's ``<tool_call>`` blocks turned into tool-call deltas
    (only calls of ``names``, the offered functions, when given)."""
    parsers = [ToolCallParser(names) for _ in range(n)]
    try:
        async for chunk in stream:
            parser = parsers[chunk.index]
            before = parser.calls
            text, calls = parser.feed(chunk.text)
            finish = chunk.finish_reason
            if finish is not None:
                rest, last = parser.finish()
                text, calls = text + rest, calls + last
                if parser.calls and finish == "stop":
                    finish = "tool_calls"
            pieces = _deltas(before, calls)
            if text or chunk.logprobs:
                yield replace(chunk, text=text, finish_reason=None, usage=None)
            for piece in pieces:
                yield Chunk(index=chunk.index, tool_calls=piece)
            if finish is not None:
                yield Chunk(index=chunk.index, finish_reason=finish, usage=chunk.usage)
    finally:
        await stream.aclose()
