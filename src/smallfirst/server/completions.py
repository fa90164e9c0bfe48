"""The two completion endpoints: a validated request, the model that answers it, served.

``/v1/chat/completions`` and ``/v1/completions`` both arrive here as protocol models that
pydantic has already checked; this module turns one into an engine request, asks the
chooser which model answers (a named model, the router's choice for ``auto``, or a
cascade), and hands it to the serving step with its fallbacks (:mod:`.fallbacks`) or the
cascade (:mod:`.cascading`). Anything refused here (an unknown model, an unsupported option, a
malformed policy) is refused before a model is touched, so it stores nothing.

With the response cache on (:mod:`.cache_hits`), a deterministic request is looked up
first, before a model is even chosen: a hit is answered from memory, a miss is served as
usual and kept when it completes. Cascades are not kept.

It does not generate, meter or frame responses itself.
"""

from __future__ import annotations

import dataclasses

from fastapi import Request
from fastapi.responses import Response

from smallfirst.engines.pool import EnginePool
from smallfirst.metering.service import Metering
from smallfirst.server.cache_hits import HEADER, CacheFront
from smallfirst.server.cascading import Cascade, serve_cascade
from smallfirst.server.choosing import Chooser
from smallfirst.server.fallbacks import serve_with_fallbacks
from smallfirst.server.protocol import ChatCompletionRequest, CompletionRequest
from smallfirst.server.responses import Envelope, Kind
from smallfirst.server.serving import Record
from smallfirst.types import Message

__all__ = ["Completions"]


class Completions:
    """Serves completion requests over one engine pool, metering and receipt store."""

    def __init__(
        self,
        pool: EnginePool,
        metering: Metering | None,
        record: Record,
        chooser: Chooser,
        cache: CacheFront | None = None,
    ) -> None:
        self.pool = pool
        self.metering = metering
        self.record = record
        self.chooser = chooser
        self.cache = cache

    async def handle(
        self, request: Request, kind: Kind, body: ChatCompletionRequest | CompletionRequest
    ) -> Response:
        gen = dataclasses.replace(body.to_generation(), stream=bool(body.stream))
        key: str | None = None
        if self.cache is not None and not self.pool.closing:
            # (shutting down: no hits either; the pool refuses the request below)
            # scope None: one cache for everyone; with API keys, pass the key's id here
            key, hit = self.cache.lookup(kind, body.model, gen, body.include_usage, scope=None)
            if hit is not None:
                return hit
        messages = gen.messages or (Message("user", gen.prompt or ""),)
        choice = self.chooser.choose(body.model, messages)
        if choice.cascade is not None:
            env = Envelope(kind, choice.model)
            cascade = Cascade(self.pool, self.metering, self.record, choice, env, gen.stream)
            response = await serve_cascade(cascade, request, messages, gen, body.include_usage)
            if self.cache is not None:
                response.headers[HEADER] = "bypass"
            return response
        keep = self.cache.keeper(key) if self.cache is not None and key is not None else None
        response = await serve_with_fallbacks(
            request,
            self.pool,
            self.chooser.health,
            kind,
            gen,
            body.include_usage,
            self.metering,
            self.record,
            choice,
            keep=keep,
        )
        if self.cache is not None:
            response.headers[HEADER] = "miss" if keep is not None else "bypass"
        return response
