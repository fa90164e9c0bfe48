"""``/smallfirst/v1/receipts`` and ``/smallfirst/v1/summary``: stored receipts, queried.

Filters: ``since`` and ``until`` (unix seconds, ISO-8601 timestamps, or a duration back
from now such as ``15m``, ``1h``, ``7d``), ``model``, ``limit`` (1–1000) and an opaque
``cursor`` for the next page. A malformed filter is a 400 in OpenAI's error shape naming
the parameter. Aggregation happens in the database, not here. Once API keys exist, a
client key sees only its own receipts and summary (an admin key sees all: :mod:`.auth`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request

from smallfirst.errors import InvalidCursorError, InvalidRequestError, NotFoundError
from smallfirst.server import openapi, schemas
from smallfirst.server.auth import caller_scope
from smallfirst.store.sqlite import SqliteStore, cursor_decode

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

_TIME = {"type": "string", "examples": ["1h", "1733140800", "2024-12-02T12:00:00Z"]}
_TIME_HELP = "unix seconds, an ISO-8601 time, or a duration back from now (15m, 1h, 7d)"
FILTERS = (
    ("since", _TIME, f"from this time on: {_TIME_HELP}"),
    ("until", _TIME, f"up to this time: {_TIME_HELP}"),
    ("model", {"type": "string"}, "only this model"),
)
"""The query filters :func:`query_filters` reads, as OpenAPI parameters."""


def parse_time(value: str | None, param: str, now: float | None = None) -> float | None:
    """Unix seconds from a timestamp, ISO-8601 date-time, or duration ago ("1h")."""
    if value is None or value == "":
        return None
    value = value.strip()
    match = _DURATION.match(value)
    if match:
        return (now or time.time()) - float(match[1]) * _UNIT_S[match[2]]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(
            f"Invalid '{param}': {value!r}; use unix seconds, an ISO-8601 time or a duration "
            "such as 15m, 1h, 7d",
            param=param,
        ) from None
    return dt.timestamp()


def query_filters(request: Request, extra: Collection[str] = ()) -> dict[str, Any]:
    """``since``/``until``/``model`` from the query; ``extra`` names further allowed params."""
    q = request.query_params
    allowed = {"since", "until", "model", "limit", "cursor", *extra}
    unknown = set(q) - allowed
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidRequestError(f"Unknown query parameter '{name}'", param=name)
    since = parse_time(q.get("since"), "since")
    until = parse_time(q.get("until"), "until")
    if since is not None and until is not None and since > until:
        raise InvalidRequestError("'since' is later than 'until'", param="since")
    return {"since": since, "until": until, "model": q.get("model") or None}


def router(store: SqliteStore) -> APIRouter:
    api = APIRouter(prefix="/smallfirst/v1")

    @api.get(
        "/receipts",
        response_model=None,
        responses={
            **openapi.json_ok(schemas.ReceiptList, "Receipts, newest first, one page."),
            **openapi.errors(400, 401, 500),
        },
        openapi_extra=openapi.query(
            *FILTERS,
            ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (100)"),
            ("cursor", {"type": "string"}, "next_cursor of the previous page"),
        ),
    )
    def receipts(request: Request) -> dict[str, Any]:
        filters = query_filters(request)
        q = request.query_params
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise InvalidRequestError("'limit' must be an integer", param="limit") from None
        if not 1 <= limit <= 1000:
            raise InvalidRequestError("'limit' must be between 1 and 1000", param="limit")
        cursor = q.get("cursor")
        if cursor is not None:
            try:
                cursor_decode(cursor)
            except InvalidCursorError:
                raise InvalidRequestError(
                    "'cursor' is not a cursor from this API", param="cursor"
                ) from None
        page = store.list(limit=limit, cursor=cursor, key_id=caller_scope(request.state), **filters)
        return {
            "object": "list",
            "data": [r.public() for r in page.receipts],
            "has_more": page.next_cursor is not None,
            "next_cursor": page.next_cursor,
        }

    @api.get(
        "/receipts/{receipt_id}",
        response_model=None,
        responses={
            **openapi.json_ok(schemas.Receipt, "One receipt."),
            **openapi.errors(401, 404, 500),
        },
    )
    def receipt(request: Request, receipt_id: str) -> dict[str, Any]:
        found = store.get(receipt_id)
        scope = caller_scope(request.state)
        if found is None or (scope is not None and found.key_id != scope):
            raise NotFoundError(f"No receipt {receipt_id!r}", param="receipt_id")
        return found.public()

    @api.get(
        "/summary",
        response_model=None,
        responses={
            **openapi.json_ok(schemas.Summary, "Totals and savings, overall and per model."),
            **openapi.errors(400, 401, 500),
        },
        openapi_extra=openapi.query(
            *FILTERS, ("by", {"enum": ["key"]}, "key: add a row per API key (keys)")
        ),
    )
    def summary(request: Request) -> dict[str, Any]:
        filters = query_filters(request, extra=("by",))
        by = request.query_params.get("by")
        if by not in (None, "", "key"):
            raise InvalidRequestError("'by' must be 'key'", param="by")
        scoped = store.summary(key_id=caller_scope(request.state), by_key=by == "key", **filters)
        return {"object": "summary", **filters, **scoped}

    return api
