"""``POST /v1/embeddings``: OpenAI's embeddings endpoint, served by in-process models.

The body is validated at the edge (:class:`EmbeddingRequest`): ``input`` is a string, a
list of strings, a list of token ids or a list of token-id lists, none of them empty, and
at most ``embedding_max_inputs`` of them; ``encoding_format`` is ``float`` (a JSON array)
or ``base64`` (the little-endian float32 bytes, as OpenAI sends them); ``dimensions`` is
refused (a model's vector is its hidden size; truncating a mean-pooled vector is not what
``dimensions`` means for models trained for it); ``user`` is accepted and ignored.

``auto`` means ``embedding_model`` (another installed model that embeds when that one is
not installed). A model that does not embed is a 400 naming one that does; an unknown one
a 404, as for chat. With API keys, the request is admitted as a chat request is
(:mod:`.access`: its models, rate limits, the worst case of its input tokens reserved).
Every request that reaches its model ends in one receipt (endpoint ``embeddings``, the
input tokens as prompt tokens, no completion), metered in its own slot like a generation.

It does not embed (:mod:`smallfirst.engines.embedding`) and does not choose among models
by the request: embeddings are not routed.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from smallfirst.catalog import Catalog, ModelSpec
from smallfirst.engines.base import GenerationRequest, Sampling
from smallfirst.engines.pool import EnginePool
from smallfirst.errors import InvalidRequestError, UnknownModelError, UnsupportedError
from smallfirst.metering.service import Metering
from smallfirst.server.access import Access
from smallfirst.server.choosing import Choice, is_auto
from smallfirst.server.serving import Ledger, Record, finished_or_gone
from smallfirst.settings import Settings
from smallfirst.types import Usage

__all__ = ["ENDPOINT", "EmbeddingRequest", "Embeddings", "encode"]

ENDPOINT = "embeddings"  # the receipts' endpoint name

TokenId = Annotated[int, Field(ge=0, strict=True)]
Text = Annotated[str, Field(strict=True)]


class EmbeddingRequest(BaseModel):
    # extra fields accepted and ignored, as on the completion endpoints
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: Text | list[Text] | list[TokenId] | list[list[TokenId]] = Field(
        description="a string, a list of strings, a list of token ids, or a list of "
        "token-id lists; none empty"
    )
    encoding_format: Literal["float", "base64"] = "float"
    # refused when given (a 400): documented as such
    dimensions: Annotated[int, Field(ge=1, strict=True)] | None = Field(
        None, description="not supported: a 400 when given"
    )
    user: str | None = None

    def inputs(self, max_inputs: int) -> list[str] | list[list[int]]:
        """The inputs as a list (strings or token lists), each checked non-empty."""
        if self.dimensions is not None:
            raise UnsupportedError(
                "dimensions is not supported: the vector is the model's hidden size",
                param="dimensions",
            )
        raw: Any = self.input
        if isinstance(raw, str):
            items: list[Any] = [raw]
        elif raw and isinstance(raw[0], int):
            items = [raw]  # one token list
        else:
            items = list(raw)
        if not items:
            raise InvalidRequestError("input must not be empty.", param="input")
        if len(items) > max_inputs:
            raise InvalidRequestError(
                f"input has {len(items)} items; at most {max_inputs} are allowed per request.",
                param="input",
            )
        for i, item in enumerate(items):
            if not item:
                raise InvalidRequestError(
                    f"input[{i}] is empty; every input must have text or tokens.", param="input"
                )
        return items


def encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """One vector on the wire: floats, or base64 of little-endian float32 (OpenAI's)."""
    as_f32 = vector.astype("<f4", copy=False)
    if encoding_format == "base64":
        return base64.b64encode(as_f32.tobytes()).decode("ascii")
    floats: list[float] = as_f32.tolist()  # Python floats, each exactly its float32
    return floats


def budget_request(inputs: list[str] | list[list[int]]) -> GenerationRequest:
    """The request as :mod:`.access` prices it: the inputs as a prompt and no completion
    (token lists become one character per token: the bound counts a byte per token)."""
    if inputs and isinstance(inputs[0], str):
        prompt = "\n".join(x for x in inputs if isinstance(x, str))
    else:
        prompt = " " * sum(len(x) for x in inputs)
    return GenerationRequest(sampling=Sampling(temperature=0.0, max_tokens=0), prompt=prompt)


class Embeddings:
    """Serves embeddings requests over one engine pool, metering and receipt store."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        pool: EnginePool,
        metering: Metering | None,
        record: Record,
        access: Access | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.pool = pool
        self.metering = metering
        self.record = record
        self.access = access

    def embedders(self) -> list[str]:
        """The installed models that embed, the configured default first."""
        names = [s.name for s in self.catalog if s.embeds and self.catalog.is_installed(s)]
        first = self.settings.embedding_model
        return sorted(names, key=lambda n: n != first)

    def choose(self, asked: str) -> Choice:
        """The model that embeds for ``asked``: itself, or for ``auto`` the default."""
        if is_auto(asked):
            ready = self.embedders()
            if not ready:
                raise UnknownModelError(
                    self.settings.embedding_model, "no model that embeds is installed here"
                )
            why = "embeddings: the default embedding model (embedding_model)"
            if ready[0] != self.settings.embedding_model:
                why = "embeddings: embedding_model is not installed; another that embeds"
            return Choice(ready[0], asked, None, {"strategy": "embedding", "why": why})
        spec = self.catalog.get(asked)  # UnknownModelError: a 404
        if not spec.embeds:
            others = self.embedders()
            hint = f"; use {others[0]!r} (or 'auto'), which does" if others else ""
            raise UnsupportedError(
                f"The model {asked!r} does not serve embeddings{hint}.", param="model"
            )
        return Choice(asked)

    async def handle(self, request: Request, body: EmbeddingRequest) -> Response:
        inputs = body.inputs(self.settings.embedding_max_inputs)
        choice = self.choose(body.model)
        record = self.record
        key = getattr(request.state, "api_key", None)  # set by server/auth once keys exist
        if key is not None and self.access is not None:
            choice, record = await self.access.admit(
                request.state, key, body.model, choice, budget_request(inputs), record
            )
        receipt_id = "emb-" + secrets.token_hex(12)
        ledger = Ledger(self.metering, record, receipt_id, ENDPOINT, False, choice)
        engine = await self.pool.embedder(choice.model)
        tokens = await asyncio.to_thread(engine.token_lists, inputs)  # 400s: nothing ran
        spec = engine.spec
        usage = Usage(prompt_tokens=sum(len(t) for t in tokens), completion_tokens=0)
        slot = self.metering.slot(spec) if self.metering else None
        task = asyncio.create_task(engine.embed(tokens, slot.set_active if slot else None))
        if not await finished_or_gone(request, task):
            await ledger.settle("cancelled", spec, None, slot=slot)  # as chat: no usage
            return Response(status_code=499)
        try:
            vectors = task.result()
        except Exception:
            await ledger.settle("error", spec, usage, slot=slot)
            raise
        receipt = await ledger.settle("ok", spec, usage, slot=slot, route=choice.route)
        payload = _body(spec, vectors, body.encoding_format, usage)
        if receipt is None:
            return JSONResponse(payload, headers={"x-smallfirst-model": spec.name})
        payload["smallfirst"] = receipt.public()
        return JSONResponse(payload, headers=receipt.headers())


def _body(
    spec: ModelSpec, vectors: list[np.ndarray], encoding_format: str, usage: Usage
) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(v, encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "model": spec.name,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens},
    }
