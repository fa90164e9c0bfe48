"""One batch line answered through the very serving step a live request takes.

A line's body is validated by the endpoint's own protocol model and handed to the same
``Completions.handle`` / ``Embeddings.handle`` the HTTP routes call, on a request made here
that carries the batch's API key exactly as :mod:`.auth` would put it (so the line is
routed, admitted against the key's models, rate limits and budgets, metered, receipted and
settled like a live request), never streamed. What comes back (the JSON body, or a domain
error through the one error table) becomes OpenAI's batch output line:
``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``.

:class:`Deferred` marks what is not the line's fault and passes (overload, shutdown, a
rate limit): the runner puts the line back rather than writing it as failed.
:func:`used` reads the tokens an output line's body says it used, for the batch's
``usage``. This module does not claim lines or write files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from smallfirst.errors import OverloadedError, RateLimitedError, ShuttingDownError
from smallfirst.server.completions import Completions
from smallfirst.server.embeddings import EmbeddingRequest, Embeddings
from smallfirst.server.errors import WireError, describe, unhandled, validation_error
from smallfirst.server.protocol import ChatCompletionRequest, CompletionRequest
from smallfirst.store.batches import Tokens

__all__ = ["Answered", "Deferred", "LineServer", "error_line", "used"]

log = logging.getLogger(__name__)


# a signal to the runner, not an error anyone is shown
class Deferred(Exception):
    """The line could not run now (overload, shutdown, a rate limit); run it later."""


@dataclass(frozen=True, slots=True)
class Answered:
    ok: bool
    line: dict[str, Any]  # the output line
    receipt: dict[str, Any] | None  # the body's "smallfirst" field (a 200's receipt)


def _request_id() -> str:
    return "req_" + secrets.token_hex(16)


def _line(custom_id: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "batch_req_" + secrets.token_hex(12),
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": _request_id(), "body": body},
        "error": None,
    }


def error_line(custom_id: str, code: str, message: str) -> dict[str, Any]:
    """A line no request was made for (the batch expired first)."""
    return {
        "id": "batch_req_" + secrets.token_hex(12),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def used(line: dict[str, Any]) -> Tokens:
    """The tokens an output line's body reports in its ``usage`` (chat and text completions:
    prompt, cached and completion tokens; embeddings: prompt tokens only). A line with no
    response, or a body without ``usage`` (an error's), used none."""
    response = line.get("response") or {}
    body = response.get("body") if isinstance(response, dict) else None
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return Tokens()
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Tokens(
        _count(usage.get("prompt_tokens")),
        _count(cached),
        _count(usage.get("completion_tokens")),
    )


async def _never() -> dict[str, Any]:
    # the client of a batch line never hangs up: is_disconnected() sees no message
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


def _request(endpoint: str, key: object | None) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": endpoint,
        "headers": [],
        "query_string": b"",
        "state": {} if key is None else {"api_key": key},
    }
    return Request(scope, receive=_never)


Handler = Callable[[Request, Any], Awaitable[Response]]


class LineServer:
    """Answers batch lines with the gateway's own handlers."""

    def __init__(self, completions: Completions, embeddings: Embeddings) -> None:
        chat: Handler = lambda r, b: completions.handle(r, "chat", b)  # noqa: E731
        text: Handler = lambda r, b: completions.handle(r, "text", b)  # noqa: E731
        self._routes: dict[str, tuple[type[BaseModel], Handler]] = {
            "/v1/chat/completions": (ChatCompletionRequest, chat),
            "/v1/completions": (CompletionRequest, text),
            "/v1/embeddings": (EmbeddingRequest, embeddings.handle),
        }

    async def answer(
        self, endpoint: str, custom_id: str, body: dict[str, Any], key: object | None
    ) -> Answered:
        """The output line of one request; raises :class:`Deferred` to run it later."""
        model, handle = self._routes[endpoint]
        request = _request(endpoint, key)
        try:
            parsed = model.model_validate({**body, "stream": False} if "stream" in body else body)
            response = await handle(request, parsed)
        except ValidationError as exc:
            return self._refused(custom_id, validation_error(exc.errors()))
        except (OverloadedError, ShuttingDownError, RateLimitedError) as exc:
            raise Deferred(str(exc)) from exc
        except Exception as exc:
            wire = describe(exc)
            if wire is None:
                log.exception("batch line %s failed", custom_id)
                wire = unhandled()
            return self._refused(custom_id, wire)
        finally:
            reservation = getattr(request.state, "reservation", None)
            if reservation is not None:
                reservation.release()  # a no-op once its receipt settled it (as server/auth)
        payload = json.loads(bytes(response.body))
        ok = response.status_code == 200
        receipt = payload.get("smallfirst") if ok and isinstance(payload, dict) else None
        return Answered(ok, _line(custom_id, response.status_code, payload), receipt)

    @staticmethod
    def _refused(custom_id: str, wire: WireError) -> Answered:
        return Answered(False, _line(custom_id, wire.status, wire.body()), None)
