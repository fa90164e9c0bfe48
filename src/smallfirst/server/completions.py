"""The two completion endpoints: a validated request, the model that answers it, served.

``/v1/chat/completions`` and ``/v1/completions`` both arrive here as protocol models that
pydantic has already checked; this module turns one into an engine request, asks the
chooser which model answers (a named model, the router's choice for ``auto``, or a
cascade), and hands it to the serving step with its fallbacks (:mod:`.fallbacks`) or the
cascade (:mod:`.cascading`). Anything refused here (an unknown model, an unsupported option, a
malformed policy) is refused before a model is touched, so it stores nothing.

With the response cache on (:mod:`.cache_hits`), a deterministic request is looked up
first, before a model is even chosen: a hit is answered from memory, a miss is served as
usual and kept when it completes. Cascades are not kept. A request with an API key is
admitted first (its model, rate limits, budget reservation), then looked up among its own
key's answers only; its hit's receipt settles the reservation like any receipt.

It does not generate, meter or frame responses itself.
"""

from __future__ import annotations

import dataclasses

from fastapi import Request
from fastapi.responses import Response

from smallfirst.engines.base import GenerationRequest
from smallfirst.engines.pool import EnginePool
from smallfirst.errors import UnsupportedError
from smallfirst.metering.service import Metering
from smallfirst.server import capabilities
from smallfirst.server.access import Access
from smallfirst.server.cache_hits import HEADER, CacheFront
from smallfirst.server.cascading import Cascade, serve_cascade
from smallfirst.server.choosing import Choice, Chooser, is_auto
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
        access: Access | None = None,
        cache: CacheFront | None = None,
    ) -> None:
        self.pool = pool
        self.metering = metering
        self.record = record
        self.chooser = chooser
        self.access = access
        self.cache = cache

    async def handle(
        self,
        request: Request,
        kind: Kind,
        body: ChatCompletionRequest | CompletionRequest,
        endpoint: str | None = None,
    ) -> Response:
        """Serve ``body``; ``endpoint`` names its receipt's endpoint when it is not the
        kind's own (``/v1/responses``, served as a chat request)."""
        if isinstance(body, ChatCompletionRequest):
            gen = body.to_generation(tool_grammar=self.chooser.settings.tool_call_grammar)
        else:
            gen = body.to_generation()
        gen = dataclasses.replace(gen, stream=bool(body.stream))
        messages = gen.messages or (Message("user", gen.prompt or ""),)
        needs = capabilities.excluder(self.pool.catalog, gen)
        record = self.record
        cache = self.cache if not self.pool.closing else None  # draining: no hits either
        ck: str | None = None  # the cache key
        key = getattr(request.state, "api_key", None)  # set by server/auth once keys exist
        if key is None or self.access is None:
            if cache is not None:  # looked up before a model is even chosen
                ck, hit = await cache.lookup(
                    kind, body.model, gen, body.include_usage, endpoint=endpoint
                )
                if hit is not None:
                    return hit
            choice = self._check(self.chooser.choose(body.model, messages, needs), gen)
        else:  # the key's models, budget and rate limits (server/access)
            exclude = self.access.excluder(key, gen) if is_auto(body.model) else None
            choice = self.chooser.choose(body.model, messages, capabilities.both(exclude, needs))
            choice = self._check(choice, gen)
            choice, record = await self.access.admit(
                request.state, key, body.model, choice, gen, record
            )
            if cache is not None:
                # admitted as any request is (its hit's receipt settles the reservation), and
                # scoped to the key: two keys never share an answer
                ck, hit = await cache.lookup(
                    kind, body.model, gen, body.include_usage,
                    scope=key.id, record=record, caller=choice.caller, endpoint=endpoint,
                )  # fmt: skip
                if hit is not None:
                    return hit
        if choice.cascade is not None:
            if gen.n > 1:  # a cascade judges one answer per attempt
                raise UnsupportedError("n > 1 is not supported with a cascade", param="n")
            env = Envelope(kind, choice.model, endpoint)
            cascade = Cascade(self.pool, self.metering, record, choice, env, gen.stream)
            response = await serve_cascade(cascade, request, messages, gen, body.include_usage)
            if cache is not None:
                response.headers[HEADER] = "bypass"
            return response
        keep = cache.keeper(ck) if cache is not None and ck is not None else None
        response = await serve_with_fallbacks(
            request,
            self.pool,
            self.chooser.health,
            kind,
            gen,
            body.include_usage,
            self.metering,
            record,
            choice,
            keep=keep,
            endpoint=endpoint,
        )
        if cache is not None:
            response.headers[HEADER] = "miss" if keep is not None else "bypass"
        return response

    def _check(self, choice: Choice, gen: GenerationRequest) -> Choice:
        return capabilities.check(choice, self.pool.catalog, gen, self.pool.available())
