"""What every engine takes and gives: requests, chunks, usage, and the Engine contract.

An engine runs one model. ``generate`` is an async iterator of :class:`Chunk`; it raises
a :class:`~smallfirst.errors.SmallfirstError` *before its first chunk* for anything that is
the request's fault (a :class:`~smallfirst.errors.ContextLengthError`, say), so the server
can still answer with a proper status code, and later only for failures mid-generation.
The last chunk carries ``finish_reason`` and ``usage``; with ``n`` > 1 every choice ends with
its own ``finish_reason`` and only the very last chunk carries ``usage`` (see :class:`Chunk`).

:data:`BACKGROUND` marks a generation as deferrable work (a batch line): the batched
engine lets a live request's prompt be read before it (see :mod:`.scheduler`).

This module holds only data types and the protocol; it imports no inference library.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from smallfirst.catalog import ModelSpec
from smallfirst.types import FinishReason, Message, Usage

# True inside a batch line's task (the batch runner sets it there and nowhere else): the
# generations it starts are background work, which yields to live requests' prompts.
BACKGROUND: ContextVar[bool] = ContextVar("background", default=False)


@dataclass(frozen=True, slots=True)
class Sampling:
    """Decoding parameters, already validated at the HTTP edge."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: bool = False
    top_logprobs: int = 0
    # GBNF text (root rule ``root``) an in-process engine holds its output to: JSON for
    # response_format json_object and json_schema (see :mod:`.grammars`), tool calls (see
    # :mod:`.toolcalls`). None: unconstrained.
    grammar: str | None = None
    # set: the grammar is lazy: free text until one of these patterns (llama.cpp's regex
    # syntax) matches the output, held to the grammar from there on (from the pattern's first
    # group, else its match) (a tool call the model chooses to make); empty: from the start
    grammar_triggers: tuple[str, ...] = ()
    # (token id, bias added to its logit), ids ascending; OpenAI's logit_bias
    logit_bias: tuple[tuple[int, float], ...] = ()
    # the client's response_format as JSON text, for remote engines to pass on unchanged;
    # None for plain text
    response_format: str | None = None


class ComputeMeter(Protocol):
    """A request's metering slot as an engine sees it (the meter's ``Slot`` is one).

    A one-at-a-time engine only opens and closes the window (``set_active``). A batched
    engine, whose decode steps serve several requests at once, also calls ``split_step``
    after each step with the tokens each request contributed to it, so that what the
    process spent during the step is split by work done rather than equally.
    """

    def set_active(self, active: bool) -> None: ...

    def split_step(self, shares: Sequence[tuple[ComputeMeter, int]]) -> None: ...


@dataclass(frozen=True, slots=True)
class Tools:
    """The functions a chat request offers: OpenAI's ``tools``, ``tool_choice`` and
    ``parallel_tool_calls``, already validated at the HTTP edge."""

    # the client's ``tools`` list as JSON text: what a chat template renders and a remote
    # engine passes on
    definitions: str
    # "none", "auto", "required", or "function" (then ``function`` names the one to call)
    choice: str = "auto"
    function: str | None = None
    # None: not sent (the default, several calls allowed)
    parallel: bool | None = None

    @property
    def names(self) -> frozenset[str]:
        """The offered functions' names."""
        return frozenset(t["function"]["name"] for t in json.loads(self.definitions))


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Either chat ``messages`` or a raw ``prompt`` (completions), plus sampling."""

    sampling: Sampling
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    # chat only: text the reply starts with, written after the template's assistant header
    # (the model continues it; it is not part of the output). In-process models only.
    assistant_prefix: str | None = None
    echo: bool = False
    # chat only: the functions the model may call
    tools: Tools | None = None
    # choices to generate (OpenAI's ``n``): chunks then carry their choice's ``index``
    n: int = 1
    stream: bool = True  # a hint: remote engines ask a non-streaming client's upstream for one body
    # Called with True when an in-process engine starts computing for this request (it holds
    # the model) and False when it stops: the meter's attribution window.
    on_compute: Callable[[bool], None] | None = field(default=None, compare=False)
    # The same slot for engines that split their steps among requests (the batched one);
    # such an engine uses it instead of ``on_compute``.
    meter: ComputeMeter | None = field(default=None, compare=False)

    def prompt_text(self) -> str:
        """What the prompt is made of, without the template: messages, their calls and the
        offered tools (for size estimates before a tokenizer is at hand)."""
        if self.messages is None:
            return self.prompt or ""
        parts = [m.content for m in self.messages]
        parts += [c.arguments for m in self.messages for c in m.tool_calls]
        if self.tools is not None:
            parts.append(self.tools.definitions)
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of one function call, as OpenAI streams it: the first piece of a call
    carries its ``id`` and ``name``, later ones more ``arguments`` text."""

    index: int  # the call's place among its choice's calls
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of generated text; the final one has ``finish_reason`` and ``usage``."""

    text: str = ""
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    # which choice of an ``n`` > 1 request this belongs to. Each choice ends with its own
    # ``finish_reason``; only the chunk that ends the last choice carries ``usage``, for all
    # of them (the prompt once, the completion tokens summed).
    index: int = 0
    tool_calls: tuple[ToolCallDelta, ...] = ()


class Engine(Protocol):
    """Runs one model. Implementations: in-process llama.cpp, remote OpenAI-compatible."""

    spec: ModelSpec

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]: ...

    async def aclose(self) -> None: ...
