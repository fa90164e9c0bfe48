"""OpenAI response bodies and stream chunks, built as plain dicts.

These run once per generated token when streaming, so they are plain functions over dicts
rather than pydantic models. They only shape data; they do not generate or send anything.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Literal

from smallfirst.engines.base import TokenLogprob, ToolCallDelta
from smallfirst.types import ToolCall, Usage

Kind = Literal["chat", "text"]
_MARK = "\x00text\x00"


def _dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class Envelope:
    """The fields every response and chunk of one request share."""

    __slots__ = ("_text_event", "created", "endpoint", "id", "kind", "model")

    def __init__(self, kind: Kind, model: str, endpoint: str | None = None) -> None:
        self.kind = kind
        self.model = model
        # the receipt's endpoint name: the kind's own, unless a bridge (``/v1/responses``
        # served as a chat request) names itself
        self.endpoint = endpoint or ("chat" if kind == "chat" else "completions")
        self.id = ("chatcmpl-" if kind == "chat" else "cmpl-") + secrets.token_hex(12)
        self.created = int(time.time())
        self._text_event: tuple[bytes, bytes] | None = None

    def text_event(self, text: str) -> bytes:
        """The SSE event of a plain text chunk, from a prefix and suffix rendered once.

        This runs once per generated token; rendering the whole chunk each time costs the
        event loop CPU that llama.cpp's threads would otherwise use.
        """
        if self._text_event is None:
            before, after = _dumps(stream_chunk(self, _MARK)).split(_dumps(_MARK))
            self._text_event = (b"data: " + before.encode(), after.encode() + b"\n\n")
        head, tail = self._text_event
        return head + _dumps(text).encode() + tail

    def head(self, obj: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
        }


def usage_dict(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    body: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens is not None:
        # OpenAI's shape: prompt tokens answered from the KV cache, not evaluated again
        body["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return body


def chat_logprobs(items: tuple[TokenLogprob, ...] | list[TokenLogprob]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": list(t.bytes),
                "top_logprobs": [
                    {"token": a.token, "logprob": a.logprob, "bytes": list(a.bytes)} for a in t.top
                ],
            }
            for t in items
        ],
        "refusal": None,
    }


def text_logprobs(
    items: tuple[TokenLogprob, ...] | list[TokenLogprob], offset: int
) -> dict[str, Any]:
    offsets = []
    for t in items:
        offsets.append(offset)
        offset += len(t.token)
    return {
        "tokens": [t.token for t in items],
        "token_logprobs": [t.logprob for t in items],
        "top_logprobs": [{a.token: a.logprob for a in t.top} for t in items],
        "text_offset": offsets,
    }


Choice = tuple[str, str | None, list[TokenLogprob] | None, tuple[ToolCall, ...]]
"""One choice of a whole answer: its text, finish reason, logprobs (None: not asked) and
tool calls."""


def full_response(
    env: Envelope,
    text: str,
    finish_reason: str | None,
    usage: Usage | None,
    logprobs: list[TokenLogprob] | None,
    more: tuple[Choice, ...] = (),
    tool_calls: tuple[ToolCall, ...] = (),
) -> dict[str, Any]:
    """The whole answer; ``more`` are the choices after the first (``n`` > 1)."""
    choices = [
        _choice(env, index, *choice)
        for index, choice in enumerate(((text, finish_reason, logprobs, tool_calls), *more))
    ]
    body = env.head("chat.completion" if env.kind == "chat" else "text_completion")
    body["choices"] = choices
    body["usage"] = usage_dict(usage)
    return body


def _choice(
    env: Envelope,
    index: int,
    text: str,
    finish_reason: str | None,
    logprobs: list[TokenLogprob] | None,
    tool_calls: tuple[ToolCall, ...] = (),
) -> dict[str, Any]:
    if env.kind == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if tool_calls:  # as OpenAI answers a call: no content unless the model wrote some
            message["content"] = text or None
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in tool_calls
            ]
        return {
            "index": index,
            "message": message,
            "logprobs": chat_logprobs(logprobs) if logprobs is not None else None,
            "finish_reason": finish_reason,
        }
    return {
        "index": index,
        "text": text,
        "logprobs": text_logprobs(logprobs, 0) if logprobs is not None else None,
        "finish_reason": finish_reason,
    }


def stream_chunk(
    env: Envelope,
    text: str | None,
    finish_reason: str | None = None,
    logprobs: tuple[TokenLogprob, ...] = (),
    role: bool = False,
    text_offset: int = 0,
    index: int = 0,
    tool_calls: tuple[ToolCallDelta, ...] = (),
) -> dict[str, Any]:
    if env.kind == "chat":
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if tool_calls:
            delta["tool_calls"] = [_call_delta(d) for d in tool_calls]
        elif text is not None:
            delta["content"] = text
        choice: dict[str, Any] = {
            "index": index,
            "delta": delta,
            "logprobs": chat_logprobs(logprobs) if logprobs else None,
            "finish_reason": finish_reason,
        }
        body = env.head("chat.completion.chunk")
    else:
        choice = {
            "index": index,
            "text": text or "",
            "logprobs": text_logprobs(logprobs, text_offset) if logprobs else None,
            "finish_reason": finish_reason,
        }
        body = env.head("text_completion")
    body["choices"] = [choice]
    return body


def _call_delta(d: ToolCallDelta) -> dict[str, Any]:
    """OpenAI's streamed call piece: id, type and name first, then arguments text."""
    out: dict[str, Any] = {"index": d.index}
    function: dict[str, Any] = {}
    if d.id is not None:
        out["id"] = d.id
        out["type"] = "function"
    if d.name is not None:
        function["name"] = d.name
    if d.arguments or d.name is not None:
        function["arguments"] = d.arguments
    out["function"] = function
    return out


def usage_chunk(env: Envelope, usage: Usage | None) -> dict[str, Any]:
    body = env.head("chat.completion.chunk" if env.kind == "chat" else "text_completion")
    body["choices"] = []
    body["usage"] = usage_dict(usage)
    return body
