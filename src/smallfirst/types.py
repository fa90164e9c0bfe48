"""The leaf types every part of smallfirst shares: chat messages, token usage, the prompt hash.

Engines, the server, evaluation and routing all speak of the same messages and token
counts, and the evaluation store and the router must agree on how a prompt is named; so
these live here, in a module that imports nothing from the package (a test holds it so).
It holds no behaviour beyond the hash: requests, chunks and engines are in
:mod:`smallfirst.engines.base`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["FinishReason", "Message", "Role", "ToolCall", "Usage", "prompt_hash"]

Role = Literal["system", "user", "assistant", "developer", "tool"]
FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call of an assistant turn (OpenAI's ``tool_calls`` item)."""

    id: str
    name: str
    arguments: str  # JSON text, as the model (or the client's history) wrote it


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str
    # an assistant turn's function calls, and a tool turn's answer to one of them
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    # prompt tokens whose KV was reused, not evaluated (OpenAI's
    # usage.prompt_tokens_details.cached_tokens); None where the engine cannot tell
    cached_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def prompt_hash(messages: Sequence[Message], assistant_prefix: str | None = None) -> str:
    """What a model was asked, as 16 hex digits: the evaluation store's key and the router's.

    A pre-filled reply (``assistant_prefix``) is part of what the model was asked; it is
    hashed only when present, and so are a turn's tool calls, so that prompts without them
    keep the hashes stored before they existed.
    """
    turns: list[list[object]] = [
        [m.role, m.content]
        if not (m.tool_calls or m.tool_call_id)
        else [m.role, m.content, [[c.name, c.arguments] for c in m.tool_calls], m.tool_call_id]
        for m in messages
    ]
    if assistant_prefix is not None:
        turns.append(["assistant-prefix", assistant_prefix])
    payload = json.dumps(turns, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
