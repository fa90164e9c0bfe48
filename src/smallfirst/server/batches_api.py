"""OpenAI's Batch API: create, retrieve, list and cancel batches.

``POST /v1/batches`` names an uploaded ``purpose=batch`` file of the caller's, the
endpoint its lines go to (``/v1/chat/completions``, ``/v1/completions`` or
``/v1/embeddings``) and a ``completion_window`` ("24h"; as our extension any "<N>h" up to
168). The batch and one row per line are stored together, status ``validating``; the
runner (:mod:`.batch_runner`) takes it from there. A file whose lines name another
endpoint makes a ``failed`` batch with its ``errors`` naming those lines, as OpenAI does.

``output_expires_after`` (``{"anchor": "created_at", "seconds"}``, 3600 to 2592000) gives
the batch's output and error files an ``expires_at`` that many seconds after each file is
written; without it they never expire.

Cancel moves a ``validating`` or ``in_progress`` batch to ``cancelling``: no new line
starts, lines already running finish, and the runner then writes the files (finished
lines kept) and marks it ``cancelled``.

The batch object is OpenAI's, with ``request_counts`` counted from the lines and
``usage`` the finished lines' tokens (counted as each line finished), plus a
``smallfirst`` field: the plan (hours chosen, or at once and why) and grams of CO2 as run.
This module does not run lines.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from smallfirst.errors import InvalidRequestError
from smallfirst.server import openapi
from smallfirst.server.batch_input import ENDPOINTS, ExpiresAfter, parse_lines, window_hours
from smallfirst.server.batch_plans import carbon_view, estimate_lines
from smallfirst.server.batch_schemas import Batch, BatchList
from smallfirst.server.files_api import caller_key, owner_key, page
from smallfirst.server.offload import Offload
from smallfirst.settings import Settings
from smallfirst.store.batches import BatchRecord, BatchStore, LineRef
from smallfirst.store.files import FileStore

__all__ = ["BatchCreate", "batch_object", "router"]

MAX_ERRORS = 100  # lines named in a failed batch's errors


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")  # fields OpenAI may add: accepted, not used

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16
    )
    output_expires_after: ExpiresAfter | None = None


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def batch_object(record: BatchRecord, store: BatchStore, pue: float) -> dict[str, Any]:
    """OpenAI's ``batch`` object, with our ``smallfirst`` field: the plan, and gCO2 as run
    against at submission and in the window's worst hours."""
    counts = store.counts(record.id)
    return {
        "id": record.id,
        "object": "batch",
        "endpoint": record.endpoint,
        "model": None,
        "errors": None if record.errors is None else {"object": "list", "data": record.errors},
        "input_file_id": record.input_file_id,
        "completion_window": record.completion_window,
        "status": record.status,
        "output_file_id": record.output_file_id,
        "error_file_id": record.error_file_id,
        "created_at": int(record.created_at),
        "expires_at": int(record.expires_at),
        **{name: _ts(value) for name, value in record.stamps.items()},
        "request_counts": {
            "total": counts.total,
            "completed": counts.completed,
            "failed": counts.failed,
        },
        "metadata": record.metadata,
        "usage": record.usage.public(),
        "smallfirst": {"plan": record.plan, **carbon_view(record.plan, counts, pue)},
    }


def _wrong_endpoint(content: bytes, endpoint: str, max_lines: int) -> list[dict[str, Any]]:
    refs, urls = parse_lines(content, max_lines)
    if urls <= {endpoint}:
        return []
    errors: list[dict[str, Any]] = []
    for ref in refs:
        url = json.loads(content[ref.offset : ref.offset + ref.length]).get("url")
        if url != endpoint and len(errors) < MAX_ERRORS:
            errors.append(
                {
                    "code": "mismatched_url",
                    "line": ref.line,
                    "message": f"The url {url} of this line is not the batch's endpoint {endpoint}",
                    "param": "url",
                }
            )
    return errors


def _batch_row(
    settings: Settings, files: FileStore, body: BatchCreate, owner: str | None, scope: str | None
) -> tuple[dict[str, Any], list[LineRef]]:
    """The new batch's row and its lines (none for a batch that fails at once)."""
    if body.endpoint not in ENDPOINTS:
        raise InvalidRequestError(
            f"endpoint must be one of {', '.join(ENDPOINTS)}", param="endpoint"
        )
    hours = window_hours(body.completion_window)
    source = files.get(body.input_file_id, scope)
    if source.purpose != "batch":
        raise InvalidRequestError(
            f"File {source.id} was not uploaded with purpose 'batch'", param="input_file_id"
        )
    content = files.read(source.id, None)
    refs, _ = parse_lines(content, settings.batch_max_lines)
    errors = _wrong_endpoint(content, body.endpoint, settings.batch_max_lines)
    now = time.time()
    row: dict[str, Any] = {
        "id": "batch_" + secrets.token_hex(12),
        "key_id": owner,
        "endpoint": body.endpoint,
        "input_file_id": source.id,
        "completion_window": body.completion_window,
        "status": "failed" if errors else "validating",
        "created_at": now,
        "expires_at": now + hours * 3600.0,
        "metadata": None if body.metadata is None else _json(body.metadata),
        "plan": _json({"estimate": estimate_lines(content, refs, settings.default_model)}),
        "output_expires_s": (
            None if body.output_expires_after is None else float(body.output_expires_after.seconds)
        ),
    }
    if errors:
        row["errors"] = _json(errors)
        row["failed_at"] = now
    return row, [] if errors else refs


def router(
    settings: Settings,
    files: FileStore,
    batches: BatchStore,
    offload: Offload,
    wake: Callable[[], None] | None = None,
) -> APIRouter:
    """The routes; ``wake`` tells this gateway's runner that a batch was made or cancelled.
    Each route's store work (rows, and the input file's bytes) runs through ``offload``, off
    the event loop."""
    api = APIRouter()
    _writes(api, settings, files, batches, offload, wake or (lambda: None))
    _reads(api, settings, batches, offload)
    return api


def _writes(
    api: APIRouter,
    settings: Settings,
    files: FileStore,
    batches: BatchStore,
    offload: Offload,
    wake: Callable[[], None],
) -> None:
    """``POST /v1/batches`` and its cancel."""

    def create_batch(body: BatchCreate, owner: str | None, scope: str | None) -> dict[str, Any]:
        record = batches.create(*_batch_row(settings, files, body, owner, scope))
        return batch_object(record, batches, settings.pue)

    def cancel_batch(batch_id: str, scope: str | None) -> dict[str, Any]:
        record = batches.get(batch_id, scope)
        if not batches.move(record.id, "cancelling", since=("validating", "in_progress")):
            current = batches.get(record.id, None)
            if current.status not in ("cancelling", "cancelled"):
                raise InvalidRequestError(
                    f"Cannot cancel a batch with status '{current.status}'.", param="batch_id"
                )
        return batch_object(batches.get(record.id, None), batches, settings.pue)

    @api.post(
        "/v1/batches",
        response_model=None,
        responses={
            **openapi.json_ok(Batch, "The batch, validating (or failed)."),
            **openapi.errors(400, 401, 404, 413, 500),
        },
    )
    async def create(request: Request, body: BatchCreate) -> JSONResponse:
        made = await offload(create_batch, body, owner_key(request), caller_key(request))
        wake()
        return JSONResponse(made)

    @api.post(
        "/v1/batches/{batch_id}/cancel",
        response_model=None,
        responses={
            **openapi.json_ok(Batch, "The batch, cancelling (or cancelled)."),
            **openapi.errors(400, 401, 404, 500),
        },
    )
    async def cancel(request: Request, batch_id: str) -> JSONResponse:
        cancelled = await offload(cancel_batch, batch_id, caller_key(request))
        wake()
        return JSONResponse(cancelled)


def _reads(api: APIRouter, settings: Settings, batches: BatchStore, offload: Offload) -> None:
    """``GET`` one batch, and the list."""

    def one(batch_id: str, scope: str | None) -> dict[str, Any]:
        return batch_object(batches.get(batch_id, scope), batches, settings.pue)

    def listed(scope: str | None, after: str | None, limit: int) -> dict[str, Any]:
        rows = batches.page(scope, after=after, limit=limit + 1)
        data = [batch_object(r, batches, settings.pue) for r in rows[:limit]]
        return page(data, len(rows) > limit)

    @api.get(
        "/v1/batches/{batch_id}",
        response_model=None,
        responses={**openapi.json_ok(Batch, "One batch."), **openapi.errors(401, 404, 500)},
    )
    async def retrieve(request: Request, batch_id: str) -> JSONResponse:
        return JSONResponse(await offload(one, batch_id, caller_key(request)))

    @api.get(
        "/v1/batches",
        response_model=None,
        responses={
            **openapi.json_ok(BatchList, "The caller's batches, newest first."),
            **openapi.errors(400, 401, 500),
        },
    )
    async def list_batches(
        request: Request,
        after: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> JSONResponse:
        return JSONResponse(await offload(listed, caller_key(request), after, limit))


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
