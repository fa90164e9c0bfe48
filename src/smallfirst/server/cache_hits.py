"""The response cache in front of the models: look a request up, answer a hit, keep a miss.

:meth:`CacheFront.lookup` runs before any model is chosen or touched. A hit is answered
from memory in the shape a live answer has: one JSON body, or server-sent events (the text
replayed in word-sized chunks, or one chunk with every logprob when they were asked for)
whose last chunk carries the receipt, committed before it is sent. Its receipt says
``cache: hit``, names the receipt whose answer it reused (``cache.reuses``), and charges
what the lookup cost (and, for a body, its receipt and framing), metered exactly as a
generation is (an accounting slot of the process's CPU time or the hardware counters, see
:mod:`smallfirst.metering.meter`); its baseline is the reused receipt's.

A miss's lookup (microseconds of hashing) is billed to no one. A miss hands back a
:data:`~.serving.Keep` for the serving step, which gives it the answer if it completes.

Every answer carries ``x-smallfirst-cache``: ``hit``, ``miss`` (looked up, and kept if it
completes), or ``bypass`` (not deterministic, or a cascade: never kept).

This module does not key or evict (:mod:`.response_cache`) and does not run models.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator

import anyio
from fastapi.responses import Response

from smallfirst.engines.base import Chunk, GenerationRequest
from smallfirst.metering.meter import Slot
from smallfirst.metering.receipts import Receipt
from smallfirst.metering.service import Metering, Outcome
from smallfirst.server.generation import Answer
from smallfirst.server.response_cache import Entry, ResponseCache, cache_key, cacheable
from smallfirst.server.responses import Envelope, Kind
from smallfirst.server.serving import (
    Keep,
    Record,
    body_response,
    endpoint_of,
    stream_response,
)
from smallfirst.types import Usage

__all__ = ["HEADER", "CacheFront"]

HEADER = "x-smallfirst-cache"
# a break before every word that follows whitespace: "Hi there!" -> "Hi ", "there!"
_WORDS = re.compile(r"(?<=\s)(?=\S)")


class CacheFront:
    """Looks requests up in one :class:`ResponseCache` and answers its hits."""

    def __init__(self, cache: ResponseCache, metering: Metering | None, record: Record) -> None:
        self.cache = cache
        self.metering = metering
        self.record = record

    async def lookup(
        self,
        kind: Kind,
        model: str,
        gen: GenerationRequest,
        include_usage: bool,
        scope: str | None = None,
        record: Record | None = None,
        caller: tuple[str, str] | None = None,
        endpoint: str | None = None,
    ) -> tuple[str | None, Response | None]:
        """(the request's key or None when it is not cacheable, the hit's response or None).

        ``model`` is the name the client sent (a policy counts as itself); ``scope`` keeps
        callers apart (an API key's id). ``record`` stores a hit's receipt (an admitted
        key's, which also settles its reservation; default the cache's own) and ``caller``
        (key id, name) goes on it; ``endpoint`` names the receipt's endpoint when it is not
        the kind's own.
        """
        if not cacheable(gen):
            return None, None
        started, created = time.perf_counter(), time.time()
        slot = self.metering.lookup_slot() if self.metering is not None else None
        if slot is not None:
            slot.set_active(True)
        try:
            key = cache_key(kind, model, gen, scope)
            entry = self.cache.get(key) if key is not None else None
        except BaseException:
            _stop(slot)
            raise
        if entry is None:
            _stop(slot)
            return key, None
        env = Envelope(kind, entry.model, endpoint)
        settle = _Settle(self, env, entry, slot, (started, created), gen.stream)
        settle.record = record or self.record
        settle.caller = caller
        answer = Answer(entry.text, entry.finish_reason, entry.usage, entry.logprobs)
        if not gen.stream:
            response: Response = body_response(
                env, answer, gen.sampling.logprobs, await settle("ok", entry.usage)
            )
        else:
            # the slot stops here: a stream the server never starts must not leave it
            # active (it would take a share of every later request's energy); the receipt
            # is made when the stream ends, with its status
            _stop(slot)
            first, rest = _replay(entry)
            response = stream_response(env, first, rest, include_usage, settle)
        response.headers[HEADER] = "hit"
        return key, response

    def keeper(self, key: str) -> Keep:
        """What the serving step calls with a miss's complete answer."""

        def keep(model: str, answer: Answer, receipt: Receipt | None) -> None:
            if answer.finish_reason is None:
                return
            self.cache.put(
                key,
                model,
                answer.text,
                answer.finish_reason,
                answer.usage,
                answer.logprobs,
                receipt,
            )

        return keep


def _stop(slot: Slot | None) -> None:
    if slot is not None:
        slot.set_active(False)


class _Settle:
    """The :data:`~.serving.Finish` of a hit: its receipt, made and stored once."""

    def __init__(
        self,
        front: CacheFront,
        env: Envelope,
        entry: Entry,
        slot: Slot | None,
        times: tuple[float, float],  # (perf_counter, unix) at the request's start
        stream: bool,
    ) -> None:
        self.front = front
        self.env = env
        self.entry = entry
        self.slot = slot
        self.started, self.created = times
        self.stream = stream
        self.record: Record = front.record
        self.caller: tuple[str, str] | None = None
        self.done = False
        self.receipt: Receipt | None = None

    async def __call__(self, status: str, usage: Usage | None) -> Receipt | None:
        if self.done:
            return self.receipt
        self.done = True
        metering, original = self.front.metering, self.entry.receipt
        if metering is None or original is None or self.slot is None:
            _stop(self.slot)
            return None
        outcome = Outcome(
            receipt_id=self.env.id,
            created_at=self.created,
            endpoint=endpoint_of(self.env),
            stream=self.stream,
            status=status,
            tokens=None,
            duration_s=time.perf_counter() - self.started,
            ttft_s=None,
            key_id=self.caller[0] if self.caller else None,
            key_name=self.caller[1] if self.caller else None,
        )
        self.receipt = metering.hit_receipt(self.slot, outcome, original)
        with anyio.CancelScope(shield=True):  # made: stored, as a miss's (serving.Ledger)
            await self.record(self.receipt)
        return self.receipt


def _replay(entry: Entry) -> tuple[Chunk, AsyncGenerator[Chunk, None]]:
    """A cached answer as an engine's chunks: word-sized text pieces (or one chunk with all
    the logprobs), then the finish reason and usage."""
    if entry.logprobs:
        pieces = [Chunk(entry.text, entry.logprobs)]
    else:
        pieces = [Chunk(text) for text in _WORDS.split(entry.text)]
    last = Chunk(finish_reason=entry.finish_reason, usage=entry.usage)

    async def rest() -> AsyncGenerator[Chunk, None]:
        for chunk in pieces[1:]:
            yield chunk
        yield last

    return pieces[0], rest()
