"""The dashboard's page and its data endpoints.

Page: ``GET /`` and ``GET /dashboard`` serve ``static/index.html``; its CSS, JavaScript and
icon come from ``/dashboard/static/``. All of it is package data, so the page works with no
network beyond the gateway itself (no CDN, no build step).

Data, under ``/smallfirst/v1/dashboard`` (filters ``since``/``until``/``model`` as in
:mod:`smallfirst.server.receipts_api`, with the same OpenAI-style 400s):

* ``/meta``: the reference model savings are measured against, the default model, version;
* ``/timeseries?since=1h&bucket=60``: requests, tokens and energy per model and time bucket
  (``bucket`` in seconds; omitted, it is chosen to give about 60 buckets);
* ``/frontier?run=ID``: each evaluated model as a point, macro accuracy against mean joules
  per item (:func:`smallfirst.store.eval_summary.summarize`), with the Pareto frontier marked.

The headline figures, the share of traffic per tier (the summary groups by model and tier)
and the latest-receipts table use ``/smallfirst/v1/summary`` and ``/smallfirst/v1/receipts``
as they are: one aggregate query fewer per refresh; the batches table uses ``/v1/batches``
(its ``smallfirst`` field: the plan, gCO2 as run, at submission and in the worst hours).
Everything is aggregated in SQL (:mod:`smallfirst.store.dashboard_queries`); no endpoint
ships raw receipts.

This module does not store, meter or route anything.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from smallfirst._version import __version__
from smallfirst.errors import InvalidRequestError, NotFoundError
from smallfirst.server import openapi, schemas
from smallfirst.server.receipts_api import FILTERS, query_filters
from smallfirst.settings import Settings
from smallfirst.store.backend import Backend
from smallfirst.store.dashboard_queries import DashboardQueries, EvalFingerprint
from smallfirst.store.eval_summary import MACRO, Row, summarize
from smallfirst.store.sqlite import SqliteStore

# Bucket widths the automatic choice picks from, so that axis ticks fall on round times.
NICE_BUCKETS_S = (
    1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172800, 604800,
)  # fmt: skip
TARGET_BUCKETS = 60
MAX_BUCKETS = 1000
STATIC = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def _asset(name: str) -> bytes:
    return resources.files("smallfirst.dashboard").joinpath("static", name).read_bytes()


def auto_bucket_s(span_s: float) -> int:
    """The smallest round bucket that splits ``span_s`` into about TARGET_BUCKETS at most."""
    for bucket in NICE_BUCKETS_S:
        # +1: "since=1h" spans an hour and a few milliseconds; that is still 60 minutes
        if span_s / bucket <= TARGET_BUCKETS + 1:
            return bucket
    week = NICE_BUCKETS_S[-1]
    return week * math.ceil(span_s / TARGET_BUCKETS / week)


def _bucket_param(value: str | None, span_s: float) -> int:
    if value is None or value == "":
        return auto_bucket_s(span_s)
    try:
        bucket = int(value)
    except ValueError:
        raise InvalidRequestError(
            "'bucket' must be a whole number of seconds", param="bucket"
        ) from None
    if bucket < 1:
        raise InvalidRequestError("'bucket' must be at least 1 second", param="bucket")
    if span_s / bucket > MAX_BUCKETS:
        raise InvalidRequestError(
            f"'bucket' of {bucket} s splits the period into more than {MAX_BUCKETS} buckets; "
            "use a wider bucket or a shorter period",
            param="bucket",
        )
    return bucket


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """For (energy, accuracy) points: True where no other point is at least as frugal and
    at least as accurate while strictly better in one of the two."""
    return [
        not any(
            e2 <= e and a2 >= a and (e2 < e or a2 > a)
            for j, (e2, a2) in enumerate(points)
            if j != i
        )
        for i, (e, a) in enumerate(points)
    ]


def is_router(model: str) -> bool:
    # HOOK (router curve): the router's own evaluation results will be stored under the names
    # clients ask for, ``auto`` / ``auto:<policy>``. None exist yet, so ``router`` is empty
    # and the page draws nothing for it; once they do, they come back as the router's curve
    # instead of as models.
    return model == "auto" or model.startswith("auto:")


def _point(r: Row, on_frontier: bool | None) -> dict[str, Any]:
    return {
        "model": r.model,
        "accuracy": r.accuracy,
        "n": r.n,
        "energy_j_per_item": r.energy_j_per_item,
        "energy_method": r.energy_method,
        "cost_usd_per_item": r.cost_usd_per_item,
        "seconds_per_item": r.seconds_per_item,
        "on_frontier": on_frontier,
    }


def frontier(queries: DashboardQueries, run_id: str | None) -> dict[str, Any]:
    """Macro accuracy and mean J per item of every evaluated model, Pareto points marked
    (``on_frontier`` is None for a model whose energy is unknown: it cannot be placed)."""
    results = queries.eval_results(run_id)
    rows = [r for r in summarize(results) if r.benchmark == MACRO]
    models = [r for r in rows if not is_router(r.model)]
    placed = [(r.energy_j_per_item, r.accuracy) for r in models if r.energy_j_per_item is not None]
    flags = iter(pareto(placed))
    return {
        "object": "dashboard.frontier",
        "run": run_id,
        "benchmarks": sorted({r.benchmark for r in results}),
        "results": len(results),
        "models": [_point(r, None if r.energy_j_per_item is None else next(flags)) for r in models],
        "router": [_point(r, None) for r in rows if is_router(r.model)],
    }


@dataclass(frozen=True, slots=True)
class _Cached:
    run_id: str | None
    fingerprint: EvalFingerprint
    body: dict[str, Any]


class _FrontierCache:
    """The last frontier computed, reused while the evaluation results are unchanged.

    The page asks every few seconds and summarising reads every result; the fingerprint
    query is one cheap aggregate. One entry only: ``run`` comes from clients.
    """

    def __init__(self, queries: DashboardQueries) -> None:
        self._queries = queries
        self._lock = threading.Lock()
        self._last: _Cached | None = None

    def get(self, run_id: str | None) -> dict[str, Any]:
        fingerprint = self._queries.eval_fingerprint(run_id)
        last = self._last
        if last is not None and last.run_id == run_id and last.fingerprint == fingerprint:
            return last.body
        with self._lock:  # concurrent refreshes compute it once
            last = self._last
            if last is None or last.run_id != run_id or last.fingerprint != fingerprint:
                last = _Cached(run_id, fingerprint, frontier(self._queries, run_id))
                self._last = last
            return last.body


# What /openapi.json says of each data route (the handlers return plain dicts)
_META_DOC: dict[str, Any] = {
    "response_model": None,
    "responses": {
        **openapi.json_ok(schemas.DashboardMeta, "What savings are measured against."),
        **openapi.errors(401, 500),
    },
}
_TIMESERIES_DOC: dict[str, Any] = {
    "response_model": None,
    "responses": {
        **openapi.json_ok(schemas.DashboardTimeseries, "Traffic per model per bucket."),
        **openapi.errors(400, 401, 500),
    },
    "openapi_extra": openapi.query(
        *FILTERS,
        (
            "bucket",
            {"anyOf": [{"type": "integer", "minimum": 1}, {"const": ""}]},
            "bucket width in seconds; omitted or empty: about 60 buckets",
        ),
    ),
}
_FRONTIER_DOC: dict[str, Any] = {
    "response_model": None,
    "responses": {
        **openapi.json_ok(schemas.DashboardFrontier, "Accuracy against J per item."),
        **openapi.errors(400, 401, 500),
    },
    "openapi_extra": openapi.query(("run", {"type": "string"}, "one evaluation run")),
}


def router(store: SqliteStore, eval_db: Backend | Path, settings: Settings) -> APIRouter:
    """The page routes and ``/smallfirst/v1/dashboard/...``; receipts are read from
    ``store``'s database, evaluation results from ``eval_db`` (today the same one)."""
    receipts = DashboardQueries(store.backend)
    evals = DashboardQueries(eval_db)
    cache = _FrontierCache(evals)
    api = APIRouter()

    def page() -> HTMLResponse:
        return HTMLResponse(_asset("index.html"), headers={"cache-control": "no-cache"})

    api.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    api.add_api_route("/dashboard", page, methods=["GET"], include_in_schema=False)

    @api.get("/dashboard/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC:
            raise NotFoundError(f"No dashboard file {name!r}")
        return Response(
            _asset(name), media_type=STATIC[name], headers={"cache-control": "no-cache"}
        )

    @api.get("/smallfirst/v1/dashboard/meta", **_META_DOC)
    def meta() -> dict[str, Any]:
        return {
            "object": "dashboard.meta",
            "version": __version__,
            "reference_model": settings.reference_model,
            "default_model": settings.default_model,
            "receipts": settings.receipts,
        }

    @api.get("/smallfirst/v1/dashboard/timeseries", **_TIMESERIES_DOC)
    def timeseries(request: Request) -> dict[str, Any]:
        filters = query_filters(request, extra=("bucket",))
        now = time.time()
        end = filters["until"] if filters["until"] is not None else now
        start = filters["since"]
        if start is None:
            start = receipts.first_receipt_at(**filters)
        span_s = max(end - start, 0.0) if start is not None else 0.0
        bucket_s = _bucket_param(request.query_params.get("bucket"), span_s)
        points = [] if start is None else receipts.timeseries(**filters, bucket_s=bucket_s)
        return {
            "object": "dashboard.timeseries",
            **filters,
            "start": start,
            "end": end,
            "bucket_s": bucket_s,
            "models": sorted({p.model for p in points}),
            "data": [asdict(p) for p in points],
        }

    @api.get("/smallfirst/v1/dashboard/frontier", **_FRONTIER_DOC)
    def frontier_points(request: Request) -> dict[str, Any]:
        q = request.query_params
        unknown = sorted(set(q) - {"run"})
        if unknown:
            raise InvalidRequestError(f"Unknown query parameter '{unknown[0]}'", param=unknown[0])
        return cache.get(q.get("run") or None)

    return api
