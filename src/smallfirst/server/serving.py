"""The serving step: an engine's chunks turned into an answer with one metered receipt.

Every generation runs as a :class:`~.generation.Metered` generation, drained to an
:class:`~.generation.Answer` or streamed. Every request ends in exactly one receipt, built
and stored by its :class:`Ledger` when the request ends, whether it ended well, failed
after it began (``error``) or lost its client (``cancelled``): energy already spent is
recorded either way. Requests refused before generation (bad input) store nothing.

For clients it also frames the answer: one JSON body with the ``x-smallfirst-*`` headers
and a ``smallfirst`` field, or a server-sent event stream whose final chunk carries the
receipt, committed to the store *before* that chunk is sent; a stream that fails after it
began ends with an error event (:mod:`.errors`), and a client that goes away stops the
generation. :func:`serve` is the whole step for one named model.

A request the response cache may keep (:mod:`.response_cache`) carries a :data:`Keep` on
its ledger: it is handed the answer once, only when the request ends ``ok`` with a finish
reason (never an error, a cancelled request or a stream cut short), after its receipt.

This module does not choose models (:mod:`.choosing`) and does not run cascades
(:mod:`.cascading`); it knows no HTTP routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from smallfirst.catalog import ModelSpec
from smallfirst.engines.base import Chunk, Engine, GenerationRequest, TokenLogprob, ToolCallDelta
from smallfirst.metering.meter import Energy, Slot
from smallfirst.metering.receipts import Receipt
from smallfirst.metering.service import Metering, Outcome
from smallfirst.server.choosing import Choice
from smallfirst.server.errors import describe, unhandled
from smallfirst.server.generation import Answer, Metered, assemble_calls, token_counts
from smallfirst.server.responses import Envelope, full_response, stream_chunk, usage_chunk
from smallfirst.types import Usage

__all__ = [
    "DISCONNECT_POLL_S",
    "ClosingStreamingResponse",
    "Finish",
    "Keep",
    "Ledger",
    "Record",
    "body_response",
    "endpoint_of",
    "finished_or_gone",
    "serve",
    "stream_response",
]

log = logging.getLogger(__name__)

DISCONNECT_POLL_S = 0.25

Record = Callable[[Receipt], Awaitable[None]]
"""Stores a receipt (and counts it in the metrics), off the event loop (:mod:`.offload`)."""
Finish = Callable[[str, Usage | None], Awaitable[Receipt | None]]
"""Ends a request with a status (ok, error, cancelled) and usage; returns its receipt."""


Keep = Callable[[str, Answer, Receipt | None], None]
"""Hands a complete answer (the model that gave it, the answer, its receipt) to the cache."""


class Ledger:
    """The one receipt of one request: built when the request ends, stored exactly once.

    ``record`` None builds the receipt without storing it (an evaluation keeps its figures
    in its own rows). Without metering there are no receipts at all.
    """

    def __init__(
        self,
        metering: Metering | None,
        record: Record | None,
        receipt_id: str,
        endpoint: str,
        stream: bool,
        choice: Choice,
        *,
        keep: Keep | None = None,
    ) -> None:
        self.metering = metering
        self.keep = keep  # the response cache's, when the request may be kept
        self.record = record
        self.receipt_id = receipt_id
        self.endpoint = endpoint
        self.stream = stream
        self.choice = choice
        self.created_at = time.time()
        self.started = time.perf_counter()
        self.settled = False
        self.receipt: Receipt | None = None
        # told once when the request ends in error (a stream that broke after it began)
        self.on_error: Callable[[], None] | None = None

    async def settle(
        self,
        status: str,
        spec: ModelSpec,
        usage: Usage | None,
        *,
        slot: Slot | None = None,
        ttft_s: float | None = None,
        energy: Energy | None = None,
        cost_usd: float | None = None,
        predicted_quality: float | None = None,
        route: dict[str, Any] | None = None,
    ) -> Receipt | None:
        """Make and store the receipt, once; later calls return the first one.

        ``energy`` and ``cost_usd`` are given when the caller summed them (a cascade's
        attempts); otherwise they come from the slot or the model's profile.
        """
        if status == "error" and self.on_error is not None:
            on_error, self.on_error = self.on_error, None
            on_error()
        if self.settled or self.metering is None:
            return self.receipt
        self.settled = True
        outcome = Outcome(
            receipt_id=self.receipt_id,
            created_at=self.created_at,
            endpoint=self.endpoint,
            stream=self.stream,
            status=status,
            tokens=token_counts(usage),
            duration_s=time.perf_counter() - self.started,
            ttft_s=ttft_s,
            policy=self.choice.policy,
            predicted_quality=predicted_quality,
            route=json.dumps(route) if route else None,
            key_id=self.choice.caller[0] if self.choice.caller else None,
            key_name=self.choice.caller[1] if self.choice.caller else None,
            cache="miss" if self.keep is not None else None,
        )
        receipt = self.metering.receipt(spec, slot, outcome, energy=energy)
        if cost_usd is not None:
            receipt = dataclasses.replace(receipt, cost_usd=cost_usd)
        self.receipt = receipt
        if self.record is not None:
            try:
                # shielded: once made, the receipt is stored even if this request is cancelled
                with anyio.CancelScope(shield=True):
                    await self.record(receipt)
            except Exception:
                log.exception("could not store receipt %s", receipt.id)
                raise
        return receipt

    async def settle_generation(
        self, status: str, metered: Metered, usage: Usage | None
    ) -> Receipt | None:
        """Settle a request that one generation answered, with the choice's route; its time
        to first token counts from the request's start (earlier tries included)."""
        first = metered.first_at
        return await self.settle(
            status,
            metered.spec,
            usage,
            slot=metered.slot,
            ttft_s=None if first is None else first - min(self.started, metered.started),
            predicted_quality=self.choice.predicted_quality,
            route=self.choice.route,
        )


def endpoint_of(env: Envelope) -> str:
    """The receipt's endpoint name for a response envelope."""
    return env.endpoint


async def finished_or_gone(request: Request, task: asyncio.Task[Any]) -> bool:
    """Wait for ``task``; True when it finished, False when the client went away first
    (the task is then cancelled and awaited)."""
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if done:
            return True
        if await request.is_disconnected():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False


def body_response(
    env: Envelope, answer: Answer, logprobs: bool, receipt: Receipt | None
) -> JSONResponse:
    """The whole answer as one body; the receipt in headers and a ``smallfirst`` field."""
    payload = full_response(
        env,
        answer.text,
        answer.finish_reason,
        answer.usage,
        list(answer.logprobs) if logprobs else None,
        tuple(
            (a.text, a.finish_reason, list(a.logprobs) if logprobs else None, a.tool_calls)
            for a in answer.more
        ),
        answer.tool_calls,
    )
    if receipt is None:
        return JSONResponse(payload, headers={"x-smallfirst-model": env.model})
    payload["smallfirst"] = receipt.public()
    return JSONResponse(payload, headers=receipt.headers())


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that always closes its body, even when the client hangs up.

    On a disconnect Starlette cancels the task that iterates the body and leaves the
    generator as it was: suspended, or closing inside a cancelled scope where every await
    is cancelled again. Either way the chain below it (the engine's stream, an upstream
    HTTP response, an admission slot) was not released, and a pooled upstream connection
    leaked per hang-up until the pool ran dry. Closing here, shielded, releases them.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            body = self.body_iterator
            if isinstance(body, AsyncGenerator):
                with anyio.CancelScope(shield=True):
                    await body.aclose()


def stream_response(
    env: Envelope,
    first: Chunk,
    rest: AsyncGenerator[Chunk, None],
    include_usage: bool,
    finish: Finish,
    *,
    keep: Keep | None = None,
    n: int = 1,
) -> StreamingResponse:
    """``first`` and then ``rest`` as server-sent events; ``finish`` settles the receipt;
    ``keep`` gets the whole answer when the stream ends well. With ``n`` choices, each chunk
    names its choice's ``index`` and the last to finish ends the stream."""
    return ClosingStreamingResponse(
        _sse(env, first, rest, include_usage, finish, keep, n),
        media_type="text/event-stream",
        headers={
            "x-smallfirst-model": env.model,
            "x-smallfirst-receipt-id": env.id,
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
        },
    )


async def serve(
    http: Request,
    engine: Engine,
    env: Envelope,
    gen: GenerationRequest,
    include_usage: bool,
    metering: Metering | None,
    record: Record,
    choice: Choice,
    *,
    ledger: Ledger | None = None,
    settle_failure: bool = True,
) -> Response:
    """Answer a request with one model, as the client asked (``gen.stream``: body or stream).

    A caller that may still answer with another model (:mod:`.fallbacks`) passes the
    request's ``ledger`` (timed from the request's start, its receipt id ``env.id``) and
    ``settle_failure`` False, which leaves a body's failure unsettled.
    """
    metered = Metered(engine, metering, gen)
    if ledger is None:
        ledger = Ledger(metering, record, env.id, endpoint_of(env), gen.stream, choice)
    if gen.stream:
        stream = metered.chunks()
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            first = Chunk(finish_reason="stop")
        except BaseException:
            await stream.aclose()
            raise
        metered.mark_first()

        async def finish(status: str, usage: Usage | None) -> Receipt | None:
            return await ledger.settle_generation(status, metered, usage)

        return stream_response(env, first, stream, include_usage, finish, keep=ledger.keep, n=gen.n)
    task = asyncio.create_task(metered.drain())
    if not await finished_or_gone(http, task):
        await ledger.settle_generation("cancelled", metered, None)
        return Response(status_code=499)
    try:
        answer = task.result()
    except Exception:
        if settle_failure and metered.first_at is not None:  # it began: energy was spent
            await ledger.settle_generation("error", metered, None)
        raise
    receipt = await ledger.settle_generation("ok", metered, answer.usage)
    if ledger.keep is not None and answer.finish_reason is not None:
        ledger.keep(metered.spec.name, answer, receipt)
    return body_response(env, answer, gen.sampling.logprobs, receipt)


def _event(data: dict[str, Any]) -> bytes:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + body.encode() + b"\n\n"


def _chunk_dict(env: Envelope, chunk: Chunk, text_offset: int) -> dict[str, Any]:
    return stream_chunk(
        env,
        chunk.text,
        chunk.finish_reason,
        chunk.logprobs,
        text_offset=text_offset,
        index=chunk.index,
        tool_calls=chunk.tool_calls,
    )


async def _sse(
    env: Envelope,
    first: Chunk,
    stream: AsyncGenerator[Chunk, None],
    include_usage: bool,
    finish: Finish,
    keep: Keep | None = None,
    n: int = 1,
) -> AsyncIterator[bytes]:
    """The stream's events; the receipt is committed before the client sees the end."""
    usage: Usage | None = None
    offsets = [0] * n  # text completions' logprobs: offsets into each choice's text
    open_choices = n
    # the answer so far, for the cache only (a list append per token when it wants one;
    # never with n > 1, which the cache does not keep)
    parts: list[str] | None = [] if keep is not None else None
    logprobs: list[TokenLogprob] = []
    calls: list[ToolCallDelta] = []
    chunk: Chunk | None = first
    status = "cancelled"
    try:
        if env.kind == "chat":
            for i in range(n):
                yield _event(stream_chunk(env, "", role=True, index=i))
        while chunk is not None:
            usage = chunk.usage or usage
            i = chunk.index
            if parts is not None:
                parts.append(chunk.text)
                logprobs.extend(chunk.logprobs)
                calls.extend(chunk.tool_calls)
            if chunk.finish_reason is not None:
                last = _chunk_dict(env, chunk, offsets[i])
                open_choices -= 1
                if open_choices > 0:  # n > 1: other choices run on
                    yield _event(last)
                    chunk = await anext(stream, None)
                    continue
                receipt = await finish("ok", usage)
                status = "ok"
                if keep is not None and parts is not None:
                    answer = Answer(
                        "".join(parts),
                        chunk.finish_reason,
                        usage,
                        tuple(logprobs),
                        tool_calls=assemble_calls(calls),
                    )
                    keep(env.model, answer, receipt)
                if include_usage:
                    yield _event(last)
                    last = usage_chunk(env, usage)
                if receipt is not None:
                    last["smallfirst"] = receipt.public()
                yield _event(last)
                break
            if chunk.logprobs or chunk.tool_calls or (i and chunk.text):
                yield _event(_chunk_dict(env, chunk, offsets[i]))
            elif chunk.text:
                yield env.text_event(chunk.text)  # the common case, rendered from a template
            offsets[i] += len(chunk.text)
            chunk = await anext(stream, None)
        else:
            # the engine ended without a finish reason (an upstream that just stopped)
            status = "ok"
            receipt = await finish("ok", usage)
            if include_usage:
                last = usage_chunk(env, usage)
                if receipt is not None:
                    last["smallfirst"] = receipt.public()
                yield _event(last)
    except Exception as exc:
        status = "error"
        wire = describe(exc)
        if wire is None:
            log.exception("stream failed")
            wire = unhandled(f"generation failed: {exc}")
        else:
            log.warning("stream failed: %s", wire.message)
        yield _event(wire.body())
    finally:
        # shielded: a hang-up cancels this task, and the engine's stream must still close
        # settled inside the shield too: a receipt is stored even for a client that left
        with anyio.CancelScope(shield=True):
            await stream.aclose()
            await finish(status, None)  # a no-op when the receipt is already settled
    yield b"data: [DONE]\n\n"
