"""One generation on one engine: metered in its own slot, timed, drained to an :class:`Answer`.

Every generation, whether a client's request, a cascade's attempt or an evaluation item,
runs as a :class:`Metered` generation: its own metering slot (the attribution window the
engine opens and closes), timed from its creation, its stream read by the serving step or
drained here to an :class:`Answer`. A chat request that offers tools to an in-process model
has its ``<tool_call>`` blocks turned into tool calls on the way out
(:mod:`smallfirst.engines.toolcalls`); remote engines' calls come parsed by the upstream.

This module does not build receipts (:mod:`.serving`'s ledger does) nor frame responses.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from smallfirst.catalog import ModelSpec
from smallfirst.engines.base import Chunk, Engine, GenerationRequest, TokenLogprob, ToolCallDelta
from smallfirst.engines.toolcalls import tool_call_chunks
from smallfirst.metering.meter import Energy, Slot
from smallfirst.metering.service import Metering
from smallfirst.types import FinishReason, ToolCall, Usage

__all__ = ["Answer", "Metered", "assemble_calls", "token_counts"]


@dataclass(frozen=True, slots=True)
class Answer:
    """A generation drained to its end."""

    text: str
    finish_reason: FinishReason | None
    usage: Usage | None
    logprobs: tuple[TokenLogprob, ...]
    # n > 1: the choices after the first (their own usage None: ``usage`` covers them all)
    more: tuple[Answer, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()


def assemble_calls(deltas: list[ToolCallDelta]) -> tuple[ToolCall, ...]:
    """Streamed tool-call pieces put back together, in the order of their ``index``."""
    calls: dict[int, list[str]] = {}
    for d in deltas:
        id_, name, args = calls.setdefault(d.index, ["", "", ""])
        calls[d.index] = [d.id or id_, d.name or name, args + d.arguments]
    return tuple(ToolCall(*calls[k]) for k in sorted(calls))


def token_counts(usage: Usage | None) -> tuple[int, int] | None:
    return (usage.prompt_tokens, usage.completion_tokens) if usage else None


class Metered:
    """One generation on one engine, in its own metering slot, timed from its creation."""

    def __init__(
        self, engine: Engine, metering: Metering | None, request: GenerationRequest
    ) -> None:
        self.engine = engine
        self.spec: ModelSpec = engine.spec
        self.metering = metering
        self.slot: Slot | None = metering.slot(engine.spec) if metering else None
        self.request = dataclasses.replace(
            request, on_compute=self.slot.set_active if self.slot else None, meter=self.slot
        )
        self.started = time.perf_counter()
        self.first_at: float | None = None
        self.ended_at: float | None = None
        self.usage: Usage | None = None  # the latest seen, so far

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_at is None else self.first_at - self.started

    @property
    def duration_s(self) -> float:
        return (self.ended_at or time.perf_counter()) - self.started

    def chunks(self) -> AsyncGenerator[Chunk, None]:
        """The engine's stream (for a client's stream, framed without a wrapper per token;
        tool calls parsed when an in-process model was offered tools)."""
        stream = self.engine.generate(self.request)
        tools = self.request.tools
        if tools is None or tools.choice == "none" or self.spec.is_remote:
            return stream
        return tool_call_chunks(stream, self.request.n, tools.names)

    def mark_first(self) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()

    async def drain(self) -> Answer:
        """Run the generation to its end; usage and timing stay readable if it fails."""
        n = self.request.n
        parts: list[list[str]] = [[] for _ in range(n)]
        logprobs: list[list[TokenLogprob]] = [[] for _ in range(n)]
        finish: list[FinishReason | None] = [None] * n
        calls: list[list[ToolCallDelta]] = [[] for _ in range(n)]
        stream = self.chunks()
        try:
            async for chunk in stream:
                self.mark_first()
                i = chunk.index
                parts[i].append(chunk.text)
                logprobs[i].extend(chunk.logprobs)
                calls[i].extend(chunk.tool_calls)
                finish[i] = chunk.finish_reason or finish[i]
                self.usage = chunk.usage or self.usage
        finally:
            await stream.aclose()
            self.ended_at = time.perf_counter()
        answers = [
            Answer(
                "".join(parts[i]),
                finish[i],
                None,
                tuple(logprobs[i]),
                tool_calls=assemble_calls(calls[i]),
            )
            for i in range(n)
        ]
        return dataclasses.replace(answers[0], usage=self.usage, more=tuple(answers[1:]))

    def energy(self) -> Energy:
        """The energy this generation spent so far (the slot's, else the model's profile)."""
        if self.metering is None:
            return Energy(None, "unknown", note="receipts are off")
        return self.metering.energy(self.spec, self.slot, token_counts(self.usage))

    def cost_usd(self, energy: Energy) -> float | None:
        if self.metering is None:
            return None
        return self.metering.pricer.cost(
            self.spec, energy.energy_j, token_counts(self.usage), self.duration_s
        )[0]
