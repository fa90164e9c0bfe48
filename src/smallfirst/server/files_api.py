"""OpenAI's Files API for batch input: upload, list, retrieve, download, delete.

``POST /v1/files`` takes a multipart upload with ``purpose=batch`` (the one purpose served
here), at most ``files_max_bytes``, and checks it line by line (:mod:`.batch_input`)
before a byte is stored; ``expires_after[anchor]=created_at`` with
``expires_after[seconds]`` gives it an ``expires_at``, after which it is a 404 like an
unknown id, left out of lists, and swept by the batch runner. Files belong to the API
key that uploaded them (none in open mode); another client key's file is a 404, while an
admin key sees every key's files (as it sees every receipt). A file an unfinished batch
still reads cannot be deleted (cancel the batch first): its lines are read from it as they
run; once expired it is gone to callers, but its bytes are kept until that batch ends.

Objects are OpenAI's (``file``, ``list``, the deletion's ``{"id", "object", "deleted"}``).
This module does not run batches.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from smallfirst.errors import InvalidRequestError
from smallfirst.server import openapi
from smallfirst.server.auth import caller_scope
from smallfirst.server.batch_input import form_expires_after, parse_lines
from smallfirst.server.batch_schemas import FileDeleted, FileList, FileObject
from smallfirst.server.offload import Offload
from smallfirst.settings import Settings
from smallfirst.store.batches import BatchStore
from smallfirst.store.files import FileStore

__all__ = ["caller_key", "owner_key", "page", "router"]

PURPOSES = ("batch",)
CONTENT_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file's bytes (JSONL).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def owner_key(request: Request) -> str | None:
    """The id of the API key calling, which owns what it makes (None: open mode)."""
    key = getattr(request.state, "api_key", None)
    return None if key is None else str(key.id)


def caller_key(request: Request) -> str | None:
    """The key whose files and batches the caller sees: its own; None (all of them) for an
    admin key or the open gateway, as with receipts."""
    return caller_scope(request.state)


def page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's cursor page."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def router(
    settings: Settings, files: FileStore, batches: BatchStore, offload: Offload
) -> APIRouter:
    """The routes; the stores (rows, and the files' bytes on disk) are called through
    ``offload``, off the event loop."""
    api = APIRouter()
    _collection(api, settings, files, offload)
    _items(api, files, batches, offload)
    return api


def _collection(api: APIRouter, settings: Settings, files: FileStore, offload: Offload) -> None:
    """``POST`` and ``GET /v1/files``."""

    @api.post(
        "/v1/files",
        response_model=None,
        responses={
            **openapi.json_ok(FileObject, "The stored file."),
            **openapi.errors(400, 401, 413, 500),
        },
    )
    async def upload(
        request: Request,
        file: Annotated[UploadFile, File()],
        purpose: Annotated[str, Form()],
        anchor: Annotated[str | None, Form(alias="expires_after[anchor]")] = None,
        seconds: Annotated[str | None, Form(alias="expires_after[seconds]")] = None,
    ) -> JSONResponse:
        if purpose not in PURPOSES:
            raise InvalidRequestError(
                f"purpose {purpose!r} is not served here; use 'batch'", param="purpose"
            )
        lifetime_s = form_expires_after(anchor, seconds)
        content = await file.read(settings.files_max_bytes + 1)
        if len(content) > settings.files_max_bytes:
            raise InvalidRequestError(
                f"The file is larger than {settings.files_max_bytes} bytes", param="file"
            )
        refs, _ = parse_lines(content, settings.batch_max_lines)
        record = await offload(
            files.add,
            content,
            filename=file.filename or "upload.jsonl",
            purpose=purpose,
            key_id=owner_key(request),
            lines=len(refs),
            expires_after_s=lifetime_s,
        )
        return JSONResponse(record.public())

    @api.get(
        "/v1/files",
        response_model=None,
        responses={
            **openapi.json_ok(FileList, "The caller's files."),
            **openapi.errors(400, 401, 500),
        },
    )
    async def list_files(
        request: Request,
        purpose: str | None = None,
        after: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
        order: Literal["asc", "desc"] = "desc",
    ) -> JSONResponse:
        rows = await offload(
            files.page,
            caller_key(request),
            purpose=purpose,
            after=after,
            limit=limit + 1,
            newest_first=order == "desc",
        )
        return JSONResponse(page([r.public() for r in rows[:limit]], len(rows) > limit))


def _items(api: APIRouter, files: FileStore, batches: BatchStore, offload: Offload) -> None:
    """One file: ``GET``, its content, ``DELETE``."""

    def delete_unused(file_id: str, caller: str | None) -> str:
        record = files.get(file_id, caller)
        user = batches.uses_file(record.id)
        if user is not None:
            raise InvalidRequestError(
                f"File {record.id} is the input of batch {user}, which has not finished; "
                "cancel it first",
                param="file_id",
            )
        files.delete(record.id, caller)
        return record.id

    @api.get(
        "/v1/files/{file_id}",
        response_model=None,
        responses={**openapi.json_ok(FileObject, "One file."), **openapi.errors(401, 404, 500)},
    )
    async def retrieve(request: Request, file_id: str) -> JSONResponse:
        record = await offload(files.get, file_id, caller_key(request))
        return JSONResponse(record.public())

    @api.get(
        "/v1/files/{file_id}/content",
        response_model=None,
        responses={**CONTENT_OK, **openapi.errors(401, 404, 500)},
    )
    async def content(request: Request, file_id: str) -> Response:
        data = await offload(files.read, file_id, caller_key(request))
        return Response(data, media_type="application/octet-stream")

    @api.delete(
        "/v1/files/{file_id}",
        response_model=None,
        responses={
            **openapi.json_ok(FileDeleted, "Deleted."),
            **openapi.errors(400, 401, 404, 500),
        },
    )
    async def delete(request: Request, file_id: str) -> JSONResponse:
        deleted = await offload(delete_unused, file_id, caller_key(request))
        return JSONResponse({"id": deleted, "object": "file", "deleted": True})
