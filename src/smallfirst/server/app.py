"""The FastAPI application: OpenAI's endpoints over the engine pool.

``create_app(settings)`` builds everything the app needs (catalog, engine pool) and keeps
it on ``app.state``; nothing is global and nothing loads until the first request. Requests
are validated completely before a model is touched; an engine's first chunk is awaited before
the response starts, so errors that are the request's fault still get their status code,
and a failure after that ends the stream with an error event rather than a hang.

Model choice is deliberately simple here: ``auto`` (and ``auto:<policy>``) means the
configured default model until the router exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from smallfirst import __version__
from smallfirst.catalog import Catalog
from smallfirst.engines.base import Chunk, Engine, GenerationRequest, TokenLogprob, Usage
from smallfirst.engines.pool import EnginePool
from smallfirst.errors import GatewayError, upstream
from smallfirst.server.limits import BodyLimitMiddleware
from smallfirst.server.protocol import ChatCompletionRequest, CompletionRequest
from smallfirst.server.responses import (
    Envelope,
    Kind,
    full_response,
    stream_chunk,
    usage_chunk,
)
from smallfirst.settings import Settings

log = logging.getLogger(__name__)

DISCONNECT_POLL_S = 0.25


def _error_response(exc: GatewayError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


_UNION_TAG = re.compile(r"^([A-Z]\w*|str|int|float|bool|none|.*\[.*\]|[a-z]+-.*)$")


def _param(loc: Any) -> str | None:
    """OpenAI-style parameter path ("messages.[0].role") from a pydantic error location.

    pydantic puts the union member it tried ("str", "list[str]", ...) into the location;
    those are not parameters, so they are dropped.
    """
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p != "body" and not _UNION_TAG.match(p):
            parts.append(p)
    return ".".join(parts) or None


def _validation_error(exc: RequestValidationError) -> GatewayError:
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return GatewayError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
        )
    param = _param(first.get("loc", ()))
    if param is None and first.get("type") in ("missing", "model_attributes_type"):
        return GatewayError(400, "The request body must be a JSON object.")
    message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}"
    if first.get("type") == "missing":
        message = f"Missing required parameter: '{param}'."
    return GatewayError(400, message, param=param, code="invalid_value")


def create_app(settings: Settings) -> FastAPI:
    catalog = Catalog(settings)
    pool = EnginePool(catalog, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await pool.aclose()

    app = FastAPI(title="smallfirst", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.pool = pool
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 413: "request_too_large"}.get(exc.status_code)
        return _error_response(GatewayError(exc.status_code, str(exc.detail), code=code))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return _error_response(upstream(500, "The server had an error processing your request."))

    def resolve(name: str) -> str:
        if name == "auto" or name.startswith("auto:"):
            return settings.default_model
        return name

    async def run(
        request: Request, kind: Kind, body: ChatCompletionRequest | CompletionRequest
    ) -> Response:
        gen = dataclasses.replace(body.to_generation(), stream=bool(body.stream))
        engine = await pool.get(resolve(body.model))
        env = Envelope(kind, engine.spec.name)
        headers = {"x-smallfirst-model": engine.spec.name}
        if body.stream:
            stream = engine.generate(gen)
            try:
                first = await anext(stream)
            except StopAsyncIteration:
                first = Chunk(finish_reason="stop")
            except BaseException:
                await stream.aclose()
                raise
            return StreamingResponse(
                _sse(env, first, stream, body.include_usage),
                media_type="text/event-stream",
                headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        task = asyncio.create_task(_collect(engine, gen))
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                break
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return Response(status_code=499)
        text, finish, usage, logprobs = task.result()
        payload = full_response(
            env, text, finish, usage, logprobs if gen.sampling.logprobs else None
        )
        return JSONResponse(payload, headers=headers)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, body: ChatCompletionRequest) -> Response:
        return await run(request, "chat", body)

    @app.post("/v1/completions")
    async def completions(request: Request, body: CompletionRequest) -> Response:
        return await run(request, "text", body)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        created = int(time.time())
        data = [
            {
                "id": "auto",
                "object": "model",
                "created": created,
                "owned_by": "smallfirst",
                "smallfirst": {"policy": "default", "resolves_to": settings.default_model},
            }
        ]
        for name in pool.available():
            spec = catalog.get(name)
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "smallfirst",
                    "smallfirst": {
                        "tier": spec.tier,
                        "parameters": spec.parameters,
                        "quantization": spec.quantization,
                        "context_length": spec.context_length,
                        "chat": spec.chat,
                        "engine": "remote" if spec.is_remote else "llama.cpp",
                    },
                }
            )
        return {"object": "list", "data": data}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "models_available": pool.available(),
            "models_loaded": pool.loaded_models(),
        }

    return app


async def _collect(
    engine: Engine, gen: GenerationRequest
) -> tuple[str, str | None, Usage | None, list[TokenLogprob]]:
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    finish: str | None = None
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
    return "".join(parts), finish, usage, logprobs


def _event(data: dict[str, Any]) -> bytes:
    return (
        b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
    )


async def _sse(
    env: Envelope,
    first: Chunk,
    stream: AsyncGenerator[Chunk, None],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    usage: Usage | None = None
    offset = 0
    chunk: Chunk | None = first
    try:
        if env.kind == "chat":
            yield _event(stream_chunk(env, "", role=True))
        while chunk is not None:
            if chunk.text or chunk.logprobs or chunk.finish_reason:
                yield _event(
                    stream_chunk(
                        env, chunk.text, chunk.finish_reason, chunk.logprobs, text_offset=offset
                    )
                )
                offset += len(chunk.text)
            usage = chunk.usage or usage
            chunk = await anext(stream, None)
        if include_usage:
            yield _event(usage_chunk(env, usage))
    except GatewayError as exc:
        log.warning("stream failed: %s", exc.message)
        yield _event(exc.body())
    except Exception as exc:
        log.exception("stream failed")
        yield _event(upstream(500, f"generation failed: {exc}").body())
    finally:
        await stream.aclose()
    yield b"data: [DONE]\n\n"
