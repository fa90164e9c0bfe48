"""The FastAPI application: OpenAI's endpoints over the engine pool.

``create_app(settings)`` builds everything the app needs (catalog, engine pool, metering,
receipt store, metrics) and keeps it on ``app.state``; nothing is global and no model loads
until the first request. Requests are validated completely before a model is touched (see
:mod:`.completions` for how one is served and receipted).

``auto`` and ``auto:<policy>`` are chosen by the fitted router (:mod:`.choosing`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from smallfirst._version import __version__
from smallfirst.catalog import Catalog
from smallfirst.dashboard.api import router as dashboard_router
from smallfirst.engines.pool import EnginePool
from smallfirst.errors import GatewayError, upstream
from smallfirst.metering.receipts import Receipt
from smallfirst.metering.service import Metering
from smallfirst.server.choosing import Chooser
from smallfirst.server.completions import Completions
from smallfirst.server.limits import BodyLimitMiddleware
from smallfirst.server.metrics import Metrics
from smallfirst.server.protocol import ChatCompletionRequest, CompletionRequest
from smallfirst.server.receipts_api import router as receipts_router
from smallfirst.settings import Settings
from smallfirst.store.sqlite import SqliteStore

log = logging.getLogger(__name__)


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
    metering = Metering(settings, catalog) if settings.receipts else None
    store = SqliteStore(settings.db_path, synchronous=settings.store_synchronous)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await pool.aclose()
        store.close()

    app = FastAPI(title="smallfirst", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.pool = pool
    app.state.metering = metering
    app.state.store = store
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

    def record(receipt: Receipt) -> None:
        store.add(receipt)
        metrics.observe(receipt)

    chooser = Chooser(settings, pool)
    completions = Completions(pool, metering, record, chooser)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, body: ChatCompletionRequest) -> Response:
        return await completions.handle(request, "chat", body)

    @app.post("/v1/completions")
    async def text_completions(request: Request, body: CompletionRequest) -> Response:
        return await completions.handle(request, "text", body)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(receipts_router(store))
    app.include_router(dashboard_router(store, settings.db_path, settings))

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        created = int(time.time())
        routed = chooser.artifact is not None
        data = [
            {
                "id": policy,
                "object": "model",
                "created": created,
                "owned_by": "smallfirst",
                "smallfirst": {
                    "policy": policy,
                    "router": "predictive" if routed else None,
                    "resolves_to": None if routed else settings.default_model,
                },
            }
            for policy in chooser.policies()
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
