"""The one table from smallfirst's errors to OpenAI's: HTTP status, ``type`` and ``code``.

Every part raises a domain error (:mod:`smallfirst.errors`); this module alone says what
each one looks like on the wire, by walking the exception's class hierarchy, most specific
class first, to the first row of :data:`TABLE`. The app's exception handlers, the error
event that ends a failed stream, and the evaluation runner (a status below 500 is an item
the model refused; 500 and above stops the run) all read it, so a status or code is
decided in one place.

It also shapes the errors only the server meets (request validation, Starlette's HTTP
exceptions, a body over the size limit, an unhandled crash) and installs the handlers on
an app. It does not log request bodies and does not decide what is an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from smallfirst.errors import (
    AccessError,
    ContextLengthError,
    EngineError,
    GenerationError,
    InvalidCursorError,
    InvalidKeyError,
    InvalidRequestError,
    ModelNotAllowedError,
    NotFoundError,
    OverloadedError,
    PolicyError,
    QuotaExceededError,
    RateLimitedError,
    ScopeError,
    ShuttingDownError,
    SmallfirstError,
    StoreUnavailableError,
    UnknownModelError,
    UpstreamCoolingError,
    UpstreamError,
    UpstreamRefusedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

__all__ = [
    "CRASH_MESSAGE",
    "TABLE",
    "Row",
    "WireError",
    "describe",
    "http_error",
    "install",
    "unhandled",
    "validation_error",
]

log = logging.getLogger(__name__)

INVALID = "invalid_request_error"
SERVER = "server_error"
CRASH_MESSAGE = "The server had an error processing your request."


@dataclass(frozen=True, slots=True)
class WireError:
    """An error as the client sees it: an HTTP status and OpenAI's error object."""

    status: int
    message: str
    type: str = INVALID
    param: str | None = None
    code: str | None = None
    headers: Mapping[str, str] | None = None  # e.g. a 429's Retry-After

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


@dataclass(frozen=True, slots=True)
class Row:
    """How one error class is shown; ``status`` None takes the error's own (an upstream 4xx)."""

    status: int | None
    type: str
    code: str | None


TABLE: Mapping[type[SmallfirstError], Row] = {
    UnknownModelError: Row(404, INVALID, "model_not_found"),
    ContextLengthError: Row(400, INVALID, "context_length_exceeded"),
    NotFoundError: Row(404, INVALID, "not_found"),
    PolicyError: Row(400, INVALID, None),
    InvalidCursorError: Row(400, INVALID, None),
    # issue #18: the database is down; nothing was run or metered, the client may retry
    StoreUnavailableError: Row(503, SERVER, "store_unavailable"),
    InvalidRequestError: Row(400, INVALID, None),
    UpstreamRefusedError: Row(None, INVALID, "upstream_error"),
    UpstreamCoolingError: Row(503, SERVER, "upstream_cooling_down"),
    UpstreamUnavailableError: Row(502, SERVER, "upstream_unavailable"),
    UpstreamTimeoutError: Row(504, SERVER, "upstream_timeout"),
    UpstreamError: Row(502, SERVER, "upstream_error"),
    OverloadedError: Row(429, SERVER, "server_overloaded"),
    ShuttingDownError: Row(503, SERVER, "server_shutting_down"),
    GenerationError: Row(500, SERVER, "engine_error"),
    EngineError: Row(500, SERVER, "engine_error"),
    # access (issue #15): OpenAI's shapes; a key outside its models is 403 (docs/access.md)
    InvalidKeyError: Row(401, INVALID, "invalid_api_key"),
    ScopeError: Row(401, INVALID, "insufficient_permissions"),
    ModelNotAllowedError: Row(403, INVALID, "model_not_allowed"),
    QuotaExceededError: Row(429, "insufficient_quota", "insufficient_quota"),
    RateLimitedError: Row(429, "requests", "rate_limit_exceeded"),
    AccessError: Row(403, INVALID, None),
}
"""Domain errors the client may see. Any other error (a store, catalog or routing failure
in the middle of a request) is the server's fault and is shown as :func:`unhandled`."""


def _model_not_found(name: str) -> str:
    return (
        f"The model '{name}' does not exist or is not installed here. "
        "GET /v1/models lists the ones that are."
    )


def describe(exc: BaseException) -> WireError | None:
    """The wire form of a domain error in :data:`TABLE`; None for anything else."""
    if not isinstance(exc, SmallfirstError):
        return None
    for cls in type(exc).__mro__:
        row = TABLE.get(cls)
        if row is None:
            continue
        status = row.status
        if status is None:
            status = exc.status if isinstance(exc, UpstreamRefusedError) else 400
        message = exc.message
        if isinstance(exc, UnknownModelError):
            message = _model_not_found(exc.name)
        headers = None
        if isinstance(exc, OverloadedError | RateLimitedError):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return WireError(status, message, row.type, exc.param, row.code, headers)
    return None


def unhandled(message: str = CRASH_MESSAGE) -> WireError:
    """A 500 for a failure that is nobody's request's fault."""
    return WireError(500, message, SERVER, None, "upstream_error")


_UNION_TAG = re.compile(r"^([A-Z]\w*|str|int|float|bool|none|.*\[.*\]|[a-z]+-.*)$")


def _param(loc: Sequence[Any]) -> str | None:
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


def validation_error(errors: Sequence[Mapping[str, Any]]) -> WireError:
    """A 400 naming the first parameter pydantic refused."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return WireError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
        )
    param = _param(first.get("loc", ()))
    if param is None and first.get("type") in ("missing", "model_attributes_type"):
        return WireError(400, "The request body must be a JSON object.")
    message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}"
    if first.get("type") == "missing":
        message = f"Missing required parameter: '{param}'."
    return WireError(400, message, param=param, code="invalid_value")


_HTTP_CODES = {404: "not_found", 413: "request_too_large"}


def http_error(status: int, detail: str) -> WireError:
    """Starlette's own HTTP errors (an unknown route, a body over the limit)."""
    return WireError(status, detail, code=_HTTP_CODES.get(status))


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def _allowed(request: Request) -> list[str]:
    """The methods some route serves this path with (a path served by two routes, as ``GET``
    and ``POST /v1/batches``, answers a 405 naming both), found by asking each route whether
    it would take the request under each method: routers included in the app hide their
    routes' methods, not whether they match."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.routes
        )
    ]


def install(app: FastAPI) -> None:
    """Answer every error on ``app`` in OpenAI's shape."""

    @app.exception_handler(SmallfirstError)
    async def _domain(request: Request, exc: SmallfirstError) -> JSONResponse:
        wire = describe(exc)
        if wire is None:
            log.error("unhandled %s on %s", type(exc).__name__, request.url.path, exc_info=exc)
            wire = unhandled()
        return wire.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc.errors()).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = http_error(exc.status_code, str(exc.detail)).response()
        response.headers.update(exc.headers or {})  # a 405 must say what is Allowed
        if exc.status_code == 405:  # every route of the path, not only the first one's
            allowed = _allowed(request)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return unhandled().response()
