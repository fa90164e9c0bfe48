"""Serving ``model: "cascade"``: the cheapest model answers first, dearer ones only if needed.

``cascade``, ``cascade:quality=Q`` and ``cascade:energy=E`` run the router artifact's
``cascade:output`` strategy: the cheapest installed candidate answers; a verifier fitted on
evaluation results reads the prompt *and that answer* and gives P(correct); below the
policy's calibrated threshold the next tier answers, and so on up the ladder (the last
candidate's answer is always accepted). Every attempt is generated in full and metered in
its own slot, and the one receipt stored for the request counts all of them: energy, CO2
and cost are the sums over the attempts, the route lists each attempt (model, tokens,
energy, confidence, accepted or not), and tokens and ``usage`` are those of the answer the
client got (which is also what the reference-model baseline is priced on).

A streaming client gets the accepted answer as one content chunk after the cascade has
decided: a rejected answer must never reach it, so nothing can be sent before the verdict.
A client that goes away stops the attempt in progress and the energy spent so far is
recorded with status ``cancelled``.

This module runs cascades; the strategy, its verifiers and thresholds live in
:mod:`smallfirst.routing`; metering, the receipt and the response framing are the
serving step's (:mod:`.serving`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from smallfirst.engines.base import Chunk, GenerationRequest, TokenLogprob
from smallfirst.engines.pool import EnginePool
from smallfirst.metering.meter import Energy
from smallfirst.metering.receipts import Receipt
from smallfirst.metering.service import Metering
from smallfirst.server.choosing import Choice
from smallfirst.server.generation import Answer, Metered
from smallfirst.server.responses import Envelope
from smallfirst.server.serving import (
    Ledger,
    Record,
    body_response,
    endpoint_of,
    finished_or_gone,
    stream_response,
)
from smallfirst.types import FinishReason, Message, Usage

__all__ = ["Attempt", "Cascade", "combine", "serve_cascade"]


@dataclass(frozen=True, slots=True)
class Attempt:
    model: str
    text: str
    finish: FinishReason | None
    usage: Usage | None
    logprobs: tuple[TokenLogprob, ...]
    energy: Energy
    cost_usd: float | None
    duration_s: float
    confidence: float | None  # None for the last rung, whose answer is always accepted
    accepted: bool

    def public(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt_tokens": self.usage.prompt_tokens if self.usage else None,
            "completion_tokens": self.usage.completion_tokens if self.usage else None,
            "energy_j": None if self.energy.energy_j is None else round(self.energy.energy_j, 4),
            "energy_method": self.energy.method,
            "duration_s": round(self.duration_s, 4),
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "accepted": self.accepted,
        }


def combine(energies: Sequence[Energy]) -> Energy:
    """The energy of several attempts: a sum when every figure is known and of one method."""
    methods = {e.method for e in energies}
    known = [e.energy_j for e in energies if e.energy_j is not None]
    parts = " + ".join("unknown" if e.energy_j is None else f"{e.energy_j:.4g} J" for e in energies)
    if len(known) < len(energies) or len(methods) != 1:
        return Energy(
            None,
            "unknown",
            note=f"cascade of {len(energies)} attempts with unknown or mixed methods: {parts}",
        )
    cpu = [e.cpu_s for e in energies]
    return Energy(
        energy_j=sum(known),
        method=energies[0].method,
        scope=energies[0].scope,
        source=f"sum of {len(energies)} cascade attempts ({parts}); each: {energies[-1].source}",
        cpu_s=None if any(c is None for c in cpu) else sum(c for c in cpu if c is not None),
    )


class Cascade:
    """One cascade request, from the first rung to the stored receipt."""

    def __init__(
        self,
        pool: EnginePool,
        metering: Metering | None,
        record: Record,
        choice: Choice,
        env: Envelope,
        stream: bool,
    ) -> None:
        assert choice.cascade is not None
        self.env = env  # its model is set to the model whose answer is accepted
        self.pool = pool
        self.metering = metering
        self.choice = choice
        self.router, self.candidates = choice.cascade
        self.attempts: list[Attempt] = []
        self.ledger = Ledger(metering, record, env.id, endpoint_of(env), stream, choice)

    async def _attempt(self, model: str, gen: GenerationRequest) -> Attempt:
        engine = await self.pool.get(model)
        metered = Metered(engine, self.metering, dataclasses.replace(gen, stream=False))
        answer: Answer | None = None
        try:
            answer = await metered.drain()
        finally:
            # recorded even when the attempt fails or is cancelled: its energy was spent
            energy = metered.energy()
            self.attempts.append(
                Attempt(
                    model,
                    answer.text if answer else "",
                    answer.finish_reason if answer else None,
                    metered.usage,
                    answer.logprobs if answer else (),
                    energy,
                    metered.cost_usd(energy),
                    metered.duration_s,
                    None,
                    False,
                )
            )
        return self.attempts[-1]

    async def run(self, messages: Sequence[Message], gen: GenerationRequest) -> Attempt:
        model = self.choice.model
        while True:
            attempt = await self._attempt(model, gen)
            verdict = self.router.escalate(messages, self.candidates, model, attempt.text)
            confidence = None
            if model != self.candidates[-1].name:
                confidence = self.router.confidence(messages, model, attempt.text)
            attempt = dataclasses.replace(attempt, confidence=confidence, accepted=verdict is None)
            self.attempts[-1] = attempt
            if verdict is None:
                return attempt
            model = verdict.model

    async def finish(self, status: str, usage: Usage | None = None) -> Receipt | None:
        """Settle the request's one receipt, counting every attempt (``usage`` is the
        accepted answer's, already in the last attempt)."""
        if not self.attempts:
            return None
        last = self.attempts[-1]
        route = dict(self.choice.route or {})
        route["attempts"] = [a.public() for a in self.attempts]
        route["escalations"] = len(self.attempts) - 1
        costs = [a.cost_usd for a in self.attempts]
        return await self.ledger.settle(
            status,
            self.pool.catalog.get(last.model),
            last.usage,
            energy=combine([a.energy for a in self.attempts]),
            cost_usd=sum(c for c in costs if c) if all(c is not None for c in costs) else None,
            predicted_quality=last.confidence,
            route=route,
        )


async def serve_cascade(
    cascade: Cascade,
    request: Request,
    messages: Sequence[Message],
    gen: GenerationRequest,
    include_usage: bool,
) -> Response:
    """Run ``cascade`` and answer as the client asked (body or stream)."""
    task = asyncio.create_task(cascade.run(messages, gen))
    if not await finished_or_gone(request, task):
        await cascade.finish("cancelled")
        return Response(status_code=499)
    try:
        accepted = task.result()
    except Exception:
        await cascade.finish("error")
        raise
    env = cascade.env
    env.model = accepted.model
    if gen.stream:

        async def replay() -> AsyncGenerator[Chunk, None]:
            yield Chunk(finish_reason=accepted.finish or "stop", usage=accepted.usage)

        first = Chunk(text=accepted.text, logprobs=accepted.logprobs)
        return stream_response(env, first, replay(), include_usage, cascade.finish)
    answer = Answer(accepted.text, accepted.finish, accepted.usage, accepted.logprobs)
    return body_response(env, answer, gen.sampling.logprobs, await cascade.finish("ok"))
