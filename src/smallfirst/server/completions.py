"""Serving one completion request: engine, stream or body, and its receipt.

For each request: validate (done by the protocol models), pick the engine, open a metering
slot, generate, and when the engine's last chunk arrives build the receipt and commit it to
the store *before* the response completes (for a stream, before the final chunk is sent).
The receipt goes into the ``x-smallfirst-*`` headers of non-streaming responses and into a
``smallfirst`` object in the body or the final stream chunk.

A stream that fails after it began ends with an error event; a client that goes away stops
the generation. Either way the energy already spent is recorded with status ``error`` or
``cancelled``. Requests refused before generation (bad input) store nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from smallfirst.catalog import ModelSpec
from smallfirst.engines.base import Chunk, Engine, GenerationRequest, TokenLogprob
from smallfirst.engines.pool import EnginePool
from smallfirst.errors import GatewayError, upstream
from smallfirst.metering.meter import Slot
from smallfirst.metering.receipts import Receipt
from smallfirst.metering.service import Metering, Outcome
from smallfirst.server.choosing import Choice, Chooser
from smallfirst.server.protocol import ChatCompletionRequest, CompletionRequest
from smallfirst.server.responses import Envelope, Kind, full_response, stream_chunk, usage_chunk
from smallfirst.types import Message, Usage

log = logging.getLogger(__name__)

DISCONNECT_POLL_S = 0.25

Record = Callable[[Receipt], None]


class Tracker:
    """Times one request and turns its end into exactly one stored receipt."""

    def __init__(
        self,
        metering: Metering | None,
        record: Record,
        env: Envelope,
        spec: ModelSpec,
        slot: Slot | None,
        stream: bool,
        choice: Choice,
    ) -> None:
        self.metering = metering
        self.record = record
        self.env = env
        self.spec = spec
        self.slot = slot
        self.stream = stream
        self.choice = choice
        self.created_at = time.time()
        self.started = time.perf_counter()
        self.first_at: float | None = None
        self.receipt: Receipt | None = None

    def first_chunk(self) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()

    def finish(self, status: str, usage: Usage | None) -> Receipt | None:
        """Make and store the receipt, once; None when receipts are switched off."""
        if self.receipt is not None or self.metering is None:
            return self.receipt
        now = time.perf_counter()
        outcome = Outcome(
            receipt_id=self.env.id,
            created_at=self.created_at,
            endpoint="chat" if self.env.kind == "chat" else "completions",
            stream=self.stream,
            status=status,
            tokens=(usage.prompt_tokens, usage.completion_tokens) if usage else None,
            duration_s=now - self.started,
            ttft_s=None if self.first_at is None else self.first_at - self.started,
            policy=self.choice.policy,
            predicted_quality=self.choice.predicted_quality,
            route=json.dumps(self.choice.route) if self.choice.route else None,
        )
        self.receipt = self.metering.receipt(self.spec, self.slot, outcome)
        try:
            self.record(self.receipt)
        except Exception:
            log.exception("could not store receipt %s", self.receipt.id)
            raise
        return self.receipt


class Completions:
    def __init__(
        self,
        pool: EnginePool,
        metering: Metering | None,
        record: Record,
        chooser: Chooser,
    ) -> None:
        self.pool = pool
        self.metering = metering
        self.record = record
        self.chooser = chooser

    async def handle(
        self, request: Request, kind: Kind, body: ChatCompletionRequest | CompletionRequest
    ) -> Response:
        gen = body.to_generation()
        messages = gen.messages or (Message("user", gen.prompt or ""),)
        choice = self.chooser.choose(body.model, messages)
        if choice.cascade is not None:
            from smallfirst.server import cascading

            cascade = cascading.Cascade(
                self.pool, self.metering, self.record, choice, Envelope(kind, choice.model)
            )
            gen = dataclasses.replace(gen, stream=bool(body.stream))
            return await cascading.serve(cascade, request, messages, gen, body.include_usage, _sse)
        engine = await self.pool.get(choice.model)
        spec = engine.spec
        env = Envelope(kind, spec.name)
        slot = self.metering.slot(spec) if self.metering else None
        gen = dataclasses.replace(
            gen, stream=bool(body.stream), on_compute=slot.set_active if slot else None
        )
        tracker = Tracker(self.metering, self.record, env, spec, slot, bool(body.stream), choice)
        if body.stream:
            stream = engine.generate(gen)
            try:
                first = await anext(stream)
            except StopAsyncIteration:
                first = Chunk(finish_reason="stop")
            except BaseException:
                await stream.aclose()
                raise
            tracker.first_chunk()
            return StreamingResponse(
                _sse(env, first, stream, body.include_usage, tracker),
                media_type="text/event-stream",
                headers=stream_headers(spec.name, env.id),
            )
        task = asyncio.create_task(_collect(engine, gen, tracker))
        if not await finished_or_gone(request, task):
            tracker.finish("cancelled", None)
            return Response(status_code=499)
        try:
            text, finish, usage, logprobs = task.result()
        except GatewayError:
            if tracker.first_at is not None:  # failed after it began: energy was spent
                tracker.finish("error", None)
            raise
        receipt = tracker.finish("ok", usage)
        payload = full_response(
            env, text, finish, usage, logprobs if gen.sampling.logprobs else None
        )
        if receipt is None:
            return JSONResponse(payload, headers={"x-smallfirst-model": spec.name})
        payload["smallfirst"] = receipt.public()
        return JSONResponse(payload, headers=receipt.headers())


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


def stream_headers(model: str, receipt_id: str) -> dict[str, str]:
    return {
        "x-smallfirst-model": model,
        "x-smallfirst-receipt-id": receipt_id,
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
    }


async def _collect(
    engine: Engine, gen: GenerationRequest, tracker: Tracker
) -> tuple[str, str | None, Usage | None, list[TokenLogprob]]:
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    finish: str | None = None
    usage: Usage | None = None
    stream = engine.generate(gen)
    try:
        async for chunk in stream:
            tracker.first_chunk()
            parts.append(chunk.text)
            logprobs.extend(chunk.logprobs)
            finish = chunk.finish_reason or finish
            usage = chunk.usage or usage
    finally:
        await stream.aclose()
    return "".join(parts), finish, usage, logprobs


def _event(data: dict[str, Any]) -> bytes:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + body.encode() + b"\n\n"


async def _sse(
    env: Envelope,
    first: Chunk,
    stream: AsyncGenerator[Chunk, None],
    include_usage: bool,
    tracker: Tracker,
) -> AsyncIterator[bytes]:
    usage: Usage | None = None
    offset = 0
    chunk: Chunk | None = first
    status = "cancelled"
    try:
        if env.kind == "chat":
            yield _event(stream_chunk(env, "", role=True))
        while chunk is not None:
            usage = chunk.usage or usage
            if chunk.finish_reason is not None:
                # The receipt is committed before the client sees the end of the answer.
                receipt = tracker.finish("ok", usage)
                status = "ok"
                last = stream_chunk(
                    env, chunk.text, chunk.finish_reason, chunk.logprobs, text_offset=offset
                )
                if include_usage:
                    yield _event(last)
                    last = usage_chunk(env, usage)
                if receipt is not None:
                    last["smallfirst"] = receipt.public()
                yield _event(last)
                break
            if chunk.logprobs:
                yield _event(
                    stream_chunk(env, chunk.text, None, chunk.logprobs, text_offset=offset)
                )
            elif chunk.text:
                yield env.text_event(chunk.text)
            offset += len(chunk.text)
            chunk = await anext(stream, None)
        else:
            # the engine ended without a finish reason (an upstream that just stopped)
            status = "ok"
            receipt = tracker.finish("ok", usage)
            if include_usage:
                last = usage_chunk(env, usage)
                if receipt is not None:
                    last["smallfirst"] = receipt.public()
                yield _event(last)
    except GatewayError as exc:
        status = "error"
        log.warning("stream failed: %s", exc.message)
        yield _event(exc.body())
    except Exception as exc:
        status = "error"
        log.exception("stream failed")
        yield _event(upstream(500, f"generation failed: {exc}").body())
    finally:
        await stream.aclose()
        if tracker.receipt is None:
            tracker.finish(status, None)
    yield b"data: [DONE]\n\n"
