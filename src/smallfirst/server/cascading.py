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
:mod:`smallfirst.routing`, the request plumbing in :mod:`.completions`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from smallfirst.engines.base import Chunk, GenerationRequest, TokenLogprob
from smallfirst.engines.pool import EnginePool
from smallfirst.errors import GatewayError
from smallfirst.metering.meter import Energy
from smallfirst.metering.receipts import Receipt
from smallfirst.metering.service import Metering, Outcome
from smallfirst.server.choosing import Choice
from smallfirst.server.responses import Envelope, full_response
from smallfirst.types import FinishReason, Message, Usage


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
        record: Callable[[Receipt], None],
        choice: Choice,
        env: Envelope,
    ) -> None:
        assert choice.cascade is not None
        self.env = env  # its model is set to the model whose answer is accepted
        self.pool = pool
        self.metering = metering
        self.record = record
        self.choice = choice
        self.router, self.candidates = choice.cascade
        self.attempts: list[Attempt] = []
        self.created_at = time.time()
        self.started = time.perf_counter()

    async def _attempt(self, model: str, gen: GenerationRequest) -> Attempt:
        engine = await self.pool.get(model)
        spec = engine.spec
        slot = self.metering.slot(spec) if self.metering else None
        gen = dataclasses.replace(gen, stream=False, on_compute=slot.set_active if slot else None)
        started = time.perf_counter()
        parts: list[str] = []
        logprobs: list[TokenLogprob] = []
        finish: FinishReason | None = None
        usage: Usage | None = None
        stream = engine.generate(gen)
        try:
            async for chunk in stream:
                parts.append(chunk.text)
                logprobs.extend(chunk.logprobs)
                finish = chunk.finish_reason or finish
                usage = chunk.usage or usage
        finally:
            await stream.aclose()
            duration_s = time.perf_counter() - started
            tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else None
            energy = (
                self.metering.energy(spec, slot, tokens)
                if self.metering
                else Energy(None, "unknown", note="receipts are off")
            )
            cost = (
                self.metering.pricer.cost(spec, energy.energy_j, tokens, duration_s)[0]
                if self.metering
                else None
            )
            # recorded even when the attempt fails or is cancelled: its energy was spent
            self.attempts.append(
                Attempt(model, "", None, usage, (), energy, cost, duration_s, None, False)
            )
        text = "".join(parts)
        attempt = dataclasses.replace(
            self.attempts[-1], text=text, finish=finish, logprobs=tuple(logprobs)
        )
        self.attempts[-1] = attempt
        return attempt

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

    def finish(self, status: str, stream: bool) -> Receipt | None:
        """Store the request's one receipt, counting every attempt."""
        if self.metering is None or not self.attempts:
            return None
        last = self.attempts[-1]
        spec = self.pool.catalog.get(last.model)
        route = dict(self.choice.route or {})
        route["attempts"] = [a.public() for a in self.attempts]
        route["escalations"] = len(self.attempts) - 1
        outcome = Outcome(
            receipt_id=self.env.id,
            created_at=self.created_at,
            endpoint="chat" if self.env.kind == "chat" else "completions",
            stream=stream,
            status=status,
            tokens=(last.usage.prompt_tokens, last.usage.completion_tokens) if last.usage else None,
            duration_s=time.perf_counter() - self.started,
            ttft_s=None,
            policy=self.choice.policy,
            predicted_quality=last.confidence,
            route=json.dumps(route),
        )
        receipt = self.metering.receipt(
            spec, None, outcome, energy=combine([a.energy for a in self.attempts])
        )
        costs = [a.cost_usd for a in self.attempts]
        if all(c is not None for c in costs):
            receipt = dataclasses.replace(receipt, cost_usd=sum(c for c in costs if c))
        self.record(receipt)
        return receipt


async def serve(
    cascade: Cascade,
    request: Request,
    messages: Sequence[Message],
    gen: GenerationRequest,
    include_usage: bool,
    sse: Callable[[Envelope, Chunk, AsyncGenerator[Chunk, None], bool, Any], Any],
) -> Response:
    """Run ``cascade`` and answer as the client asked (body or stream)."""
    from smallfirst.server.completions import finished_or_gone, stream_headers

    task = asyncio.create_task(cascade.run(messages, gen))
    if not await finished_or_gone(request, task):
        cascade.finish("cancelled", gen.stream)
        return Response(status_code=499)
    try:
        answer = task.result()
    except GatewayError:
        cascade.finish("error", gen.stream)
        raise
    env = cascade.env
    env.model = answer.model
    if gen.stream:

        async def replay() -> AsyncGenerator[Chunk, None]:
            yield Chunk(finish_reason=answer.finish or "stop", usage=answer.usage)

        first = Chunk(text=answer.text, logprobs=answer.logprobs)
        return StreamingResponse(
            sse(env, first, replay(), include_usage, _Finisher(cascade)),
            media_type="text/event-stream",
            headers=stream_headers(answer.model, env.id),
        )
    receipt = cascade.finish("ok", False)
    payload = full_response(
        env,
        answer.text,
        answer.finish,
        answer.usage,
        list(answer.logprobs) if gen.sampling.logprobs else None,
    )
    if receipt is None:
        return JSONResponse(payload, headers={"x-smallfirst-model": answer.model})
    payload["smallfirst"] = receipt.public()
    return JSONResponse(payload, headers=receipt.headers())


class _Finisher:
    """What :func:`.completions._sse` needs of a tracker, for a cascade's replayed stream."""

    def __init__(self, cascade: Cascade) -> None:
        self.cascade = cascade
        self.receipt: Receipt | None = None

    def finish(self, status: str, usage: Usage | None) -> Receipt | None:
        if self.receipt is None:
            self.receipt = self.cascade.finish(status, True)
        return self.receipt
