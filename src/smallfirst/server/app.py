"""The FastAPI application: OpenAI's endpoints over the engine pool.

``create_app(settings)`` builds everything the app needs (catalog, engine pool, metering,
receipt store, metrics) and keeps it on ``app.state``; nothing is global and no model loads
until the first request. Requests are validated completely before a model is touched (see
:mod:`.serving` for how one is served and receipted).

``auto`` and ``auto:<policy>`` are chosen by the fitted router (:mod:`.choosing`). Every
error is answered in OpenAI's shape through one table (:mod:`.errors`). API keys, budgets
and rate limits (open until a key exists) are :mod:`.auth` and :mod:`.access`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from smallfirst._version import __version__
from smallfirst.catalog import Catalog, ModelSpec
from smallfirst.dashboard.api import router as dashboard_router
from smallfirst.engines.pool import EnginePool
from smallfirst.metering.receipts import Overhead, Receipt
from smallfirst.metering.service import Metering
from smallfirst.server import errors, openapi
from smallfirst.server.access import Access, reclaim_leases
from smallfirst.server.auth import AuthMiddleware, check_bind
from smallfirst.server.batch_lines import LineServer
from smallfirst.server.batch_plans import Planner
from smallfirst.server.batch_runner import BatchRunner, stopped
from smallfirst.server.batches_api import router as batches_router
from smallfirst.server.cache_hits import CacheFront
from smallfirst.server.choosing import Chooser
from smallfirst.server.completions import Completions
from smallfirst.server.draining import Drain
from smallfirst.server.embeddings import EmbeddingRequest, Embeddings
from smallfirst.server.files_api import router as files_router
from smallfirst.server.keys_api import router as keys_router
from smallfirst.server.limits import MULTIPART_OVERHEAD_BYTES, BodyLimitMiddleware
from smallfirst.server.metrics import Metrics
from smallfirst.server.models_api import router as models_router
from smallfirst.server.offload import Offload
from smallfirst.server.protocol import ChatCompletionRequest, CompletionRequest
from smallfirst.server.receipts_api import router as receipts_router
from smallfirst.server.response_cache import ResponseCache
from smallfirst.server.responses_api import Responses
from smallfirst.server.responses_input import ResponsesRequest
from smallfirst.server.serving import Record
from smallfirst.settings import Settings
from smallfirst.store.batches import BatchStore
from smallfirst.store.files import FileStore
from smallfirst.store.keys import KeyStore
from smallfirst.store.sqlite import SqliteStore

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _cache_front(
    settings: Settings, metering: Metering | None, record: Record
) -> CacheFront | None:
    """The response cache in front of the models, or None when it is off."""
    if not settings.response_cache:
        return None
    bounds = ResponseCache(
        settings.response_cache_max_entries,
        settings.response_cache_max_bytes,
        settings.response_cache_ttl_s,
    )
    return CacheFront(bounds, metering, record)


def _batch_api(app: FastAPI, lines: LineServer) -> None:
    """The Files and Batch API (issue #19) on ``app``: its stores beside the receipts (the
    bytes in data_dir/files), its routes, and the runner (none when ``batch_runner`` is off),
    which the lifespan starts."""
    settings: Settings = app.state.settings
    store, metering = app.state.store, app.state.metering
    files = FileStore(store.backend, settings.data_dir)
    batches = BatchStore(store.backend)
    runner = None
    if settings.batch_runner:
        planner = Planner(settings, metering.profiles.get if metering else lambda _: None)
        runner = BatchRunner(
            settings, batches, files, app.state.keys, app.state.pool, lines, planner
        )
    app.state.batch_runner = runner
    offload = app.state.offload
    app.include_router(files_router(settings, files, batches, offload))
    wake = runner.wake if runner else None
    app.include_router(batches_router(settings, files, batches, offload, wake))


def _load_meter(
    metering: Metering | None, store: SqliteStore
) -> Callable[[ModelSpec], contextlib.AbstractContextManager[object]]:
    """What meters a model's load: overhead, a row of its own billed to no request."""

    def store_overhead(row: Overhead) -> None:
        try:
            store.add_overhead(row)
        except Exception:
            log.exception("could not store the overhead of loading %s", row.model)

    def load_meter(spec: ModelSpec) -> contextlib.AbstractContextManager[object]:
        if metering is None:
            return contextlib.nullcontext()
        return metering.overhead("model_load", spec.name, store_overhead)

    return load_meter


def _inference_routes(app: FastAPI, completions: Completions, embeddings: Embeddings) -> None:
    """The OpenAI endpoints that run a model: chat, text, Responses and embeddings."""
    responses = Responses(completions)

    @app.post("/v1/chat/completions", response_model=None, responses=openapi.CHAT)
    async def chat_completions(request: Request, body: ChatCompletionRequest) -> Response:
        return await completions.handle(request, "chat", body)

    @app.post("/v1/completions", response_model=None, responses=openapi.TEXT)
    async def text_completions(request: Request, body: CompletionRequest) -> Response:
        return await completions.handle(request, "text", body)

    @app.post("/v1/responses", response_model=None, responses=openapi.RESPONSES)
    async def create_response(request: Request, body: ResponsesRequest) -> Response:
        return await responses.handle(request, body)

    @app.post("/v1/embeddings", response_model=None, responses=openapi.EMBEDDINGS)
    async def create_embeddings(request: Request, body: EmbeddingRequest) -> Response:
        return await embeddings.handle(request, body)


def create_app(settings: Settings) -> FastAPI:
    catalog = Catalog(settings)
    metrics = Metrics()
    metering = Metering(settings, catalog) if settings.receipts else None
    # SQLite in the data directory unless database_url names PostgreSQL (issue #18); the
    # receipts, keys, files and batches share its one backend (on PostgreSQL: one pool)
    store = SqliteStore(settings.database, synchronous=settings.store_synchronous)

    load_meter = _load_meter(metering, store)
    pool = EnginePool(catalog, settings, observer=metrics, load_meter=load_meter)
    keys = KeyStore(store.backend, settings.data_dir)
    check_bind(settings, keys)  # no public bind without keys unless allow_anonymous
    drain = Drain(pool, settings.drain_timeout_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # expired budget leases (a replica killed mid-request) given back while serving
        reclaimer = asyncio.create_task(reclaim_leases(keys, settings.access_reservation_ttl_s))
        runner: BatchRunner | None = app.state.batch_runner  # (made after the serving step)
        running = None if runner is None else asyncio.create_task(runner.run())
        yield
        reclaimer.cancel()
        if running is not None:  # the lines it holds go back to pending for the next start
            await stopped(running)
        # uvicorn has waited for open responses (the drain) before running this
        drain.cancel()
        await pool.aclose()
        store.close()
        keys.close()

    app = FastAPI(title="smallfirst", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.pool = pool
    app.state.metering = metering
    app.state.store = store
    app.state.drain = drain  # GracefulServer starts it on SIGTERM
    app.state.keys = keys
    uploads = {"/v1/files": settings.files_max_bytes + MULTIPART_OVERHEAD_BYTES}
    app.add_middleware(
        BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes, upload_paths=uploads
    )
    # the stores are synchronous: the server awaits them on worker threads (server/offload)
    offload = app.state.offload = Offload(store.backend.max_connections)
    access = app.state.access = Access(keys, catalog, metering, settings, offload)
    app.add_middleware(
        AuthMiddleware, keys=keys, offload=offload, limiter=access.limiter
    )  # outermost
    errors.install(app)
    openapi.install(app)

    async def record(receipt: Receipt) -> None:
        await offload(store.add, receipt)
        metrics.observe(receipt)

    chooser = app.state.chooser = Chooser(settings, pool)
    metrics.watch(chooser.health)
    cache = _cache_front(settings, metering, record)
    app.state.response_cache = cache.cache if cache is not None else None
    completions = Completions(pool, metering, record, chooser, access, cache)

    embeddings = Embeddings(settings, catalog, pool, metering, record, access)
    _inference_routes(app, completions, embeddings)
    _batch_api(app, LineServer(completions, embeddings))

    @app.get("/metrics", response_class=PlainTextResponse, responses=openapi.METRICS)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(models_router(settings, catalog, pool, chooser))
    app.include_router(receipts_router(store))
    app.include_router(keys_router(keys))
    app.include_router(dashboard_router(store, store.backend, settings))
    return app
