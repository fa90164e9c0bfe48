"""What each route documents in ``/openapi.json``: its responses, errors and query parameters.

The routes keep ``response_model=None`` and return the dicts they always built; the
``responses=`` and ``openapi_extra`` given here only describe them, with the models of
:mod:`.schemas`. :func:`install` finishes the document: it adds the schemas referenced
only by ``$ref`` (the error body; the stream chunks of ``text/event-stream`` responses)
and drops FastAPI's 422 responses, which this gateway never sends (invalid input is a 400
in OpenAI's error shape).

Which errors a route lists follows where they can happen: the completion endpoints can
refuse input (400), name an unknown model (404), get a body over the limit (413), be
overloaded (429 with ``Retry-After``) or fail upstream (502, 504); every route can fail
with a 500. This module does not decide any status: :mod:`.errors` does.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from smallfirst.server import responses_schemas, schemas

__all__ = [
    "CHAT",
    "COMPLETION_ERRORS",
    "EMBEDDINGS",
    "ERROR_DESCRIPTIONS",
    "METRICS",
    "RESPONSES",
    "TEXT",
    "errors",
    "event_schema",
    "install",
    "json_ok",
    "query",
    "stream_ok",
]

Responses = dict[int | str, dict[str, Any]]

ERROR_DESCRIPTIONS = {
    400: "Invalid request; `param` names the parameter at fault. On the completion and "
    "embeddings endpoints also malformed JSON, an unsupported option (a model that does not "
    "embed, `dimensions`), or a prompt or input longer than the model's context "
    "(`context_length_exceeded`).",
    401: "Once API keys exist (docs/access.md): no key, or an unknown, expired or revoked "
    "one (`invalid_api_key`), or a client key on an admin route (`insufficient_permissions`).",
    403: "The API key may not use this model (`model_not_allowed`).",
    404: "Not found: an unknown model (`model_not_found`), receipt, file or batch (another "
    "API key's file or batch is not found either).",
    413: "Request body over `max_body_bytes`.",
    429: "Overloaded: the model's queue is full or the wait passed `queue_timeout_s` "
    "(`server_overloaded`; retry after `Retry-After` seconds), or a remote model's upstream "
    "still refused after the gateway's retries (`upstream_error`), or the API key's budget "
    "(`insufficient_quota`) or rate limit (`rate_limit_exceeded`, with `Retry-After`).",
    500: "Server error: an engine failure or an unexpected one.",
    502: "The upstream model server failed or could not be reached.",
    503: "Unavailable for now: the model is cooling down after failing "
    "(`upstream_cooling_down`), or the gateway is shutting down (`server_shutting_down`).",
    504: "The upstream model server timed out.",
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 0},
    }
}

_RECEIPT_HEADERS = {
    "x-smallfirst-model": {
        "description": "the model that answered",
        "schema": {"type": "string"},
    },
    "x-smallfirst-receipt-id": {
        "description": "the receipt's id (GET /smallfirst/v1/receipts/{receipt_id})",
        "schema": {"type": "string"},
    },
    "x-smallfirst-cache": {
        "description": "the response cache: hit (answered from memory), miss (looked up; "
        "kept if it completes) or bypass (not deterministic, or a cascade); absent when the "
        "cache is off",
        "schema": {"type": "string", "enum": ["hit", "miss", "bypass"]},
    },
    **{
        f"x-smallfirst-{name}": {
            "description": f"{what} (bodies only; absent when receipts are off)",
            "schema": {"type": "string"},
        }
        for name, what in (
            ("energy-j", "joules, or `unknown`"),
            ("energy-method", "measured, estimated, profile or unknown"),
            ("cost-usd", "dollars, or `unknown`"),
            ("co2-g", "grams of CO2, or `unknown`"),
        )
    },
}

_CHUNK_EVENTS = (
    "A server-sent event. Each `data:` is one {chunk} JSON object, the last of them carrying "
    "the receipt in a `smallfirst` field; a failure after streaming began is one `data:` "
    "with an ErrorBody; the stream ends with `data: [DONE]`."
)

# referenced by $ref alone, so FastAPI does not add them to the components itself
_REFERENCED: tuple[type[BaseModel], ...] = (
    schemas.ErrorBody,
    schemas.ChatCompletionChunk,
    schemas.TextCompletionChunk,
    responses_schemas.ResponseEvent,
)


def _ref(model: type[BaseModel]) -> str:
    return f"#/components/schemas/{model.__name__}"


def errors(*statuses: int) -> Responses:
    """The error responses ``statuses``, each with OpenAI's error body."""
    out: Responses = {}
    for status in statuses:
        # a $ref rather than "model": FastAPI would file a model under the route's own media
        # type, and /metrics answers text but errs in JSON
        entry: dict[str, Any] = {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": _ref(schemas.ErrorBody)}}},
        }
        if status == 429:
            entry["headers"] = _RETRY_AFTER
        out[status] = entry
    return out


def json_ok(model: type[BaseModel], description: str) -> Responses:
    """A 200 whose JSON body is ``model``."""
    return {200: {"model": model, "description": description}}


def event_schema(chunk: type[BaseModel]) -> dict[str, Any]:
    """One server-sent event of a stream of ``chunk`` (Open API 3.1: ``schema`` of a
    ``text/event-stream`` describes each event; its ``data`` is JSON, or ``[DONE]`` last)."""
    payload = {"anyOf": [{"$ref": _ref(chunk)}, {"$ref": _ref(schemas.ErrorBody)}]}
    return {
        "type": "object",
        "description": _CHUNK_EVENTS.format(chunk=chunk.__name__),
        "required": ["data"],
        "properties": {
            "event": {"type": "string"},
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": payload,
                    },
                ]
            },
        },
    }


def stream_ok(body: type[BaseModel], chunk: type[BaseModel], description: str) -> Responses:
    """A 200 that is ``body`` as JSON, or with ``"stream": true`` a stream of ``chunk``."""
    return {
        200: {
            "model": body,
            "description": description,
            "headers": _RECEIPT_HEADERS,
            "content": {"text/event-stream": {"schema": event_schema(chunk)}},
        }
    }


COMPLETION_ERRORS: Responses = errors(400, 401, 403, 404, 413, 429, 500, 502, 503, 504)
CHAT: Responses = {
    **stream_ok(
        schemas.ChatCompletion,
        schemas.ChatCompletionChunk,
        "The answer, with its receipt in `smallfirst` and `x-smallfirst-*` headers.",
    ),
    **COMPLETION_ERRORS,
}
TEXT: Responses = {
    **stream_ok(
        schemas.TextCompletion,
        schemas.TextCompletionChunk,
        "The completion, with its receipt in `smallfirst` and `x-smallfirst-*` headers.",
    ),
    **COMPLETION_ERRORS,
}
EMBEDDINGS: Responses = {
    200: {
        "model": schemas.EmbeddingList,
        "description": "One vector per input, in order, with the receipt in `smallfirst` "
        "and `x-smallfirst-*` headers.",
        # the response cache keeps no embeddings
        "headers": {k: v for k, v in _RECEIPT_HEADERS.items() if k != "x-smallfirst-cache"},
    },
    **errors(400, 401, 403, 404, 413, 429, 500, 503),
}
_RESPONSE_EVENTS = (
    "A server-sent event: `event:` names its type and `data:` is one ResponseEvent JSON "
    "object with that `type` and a `sequence_number`. The last is `response.completed` "
    "(or `response.incomplete`) with the whole response, its usage and its receipt in "
    "`smallfirst`; a failure after streaming began is one `error` event instead. No "
    "`[DONE]`."
)
RESPONSES: Responses = {
    200: {
        "model": responses_schemas.Response,
        "description": "The response, with its receipt in `smallfirst` and `x-smallfirst-*` "
        'headers; with `"stream": true` its events.',
        "headers": _RECEIPT_HEADERS,
        "content": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "description": _RESPONSE_EVENTS,
                    "required": ["event", "data"],
                    "properties": {
                        "event": {"type": "string"},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {"$ref": _ref(responses_schemas.ResponseEvent)},
                        },
                    },
                }
            }
        },
    },
    **COMPLETION_ERRORS,
}
METRICS: Responses = {
    200: {"description": "Prometheus metrics, text exposition format."},
    **errors(401, 500),
}


def query(*params: tuple[str, dict[str, Any], str]) -> dict[str, Any]:
    """``openapi_extra`` documenting query parameters a route reads from the request itself
    (so that its own 400s, not FastAPI's validation, answer a malformed one)."""
    return {
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": schema, "description": d}
            for name, schema, d in params
        ]
    }


def _finish(document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for model in _REFERENCED:
        extra = model.model_json_schema(
            ref_template="#/components/schemas/{model}", mode="serialization"
        )
        components.update(extra.pop("$defs", {}))
        components[model.__name__] = extra
    for path in document.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return document


def install(app: FastAPI) -> None:
    """Build ``app``'s OpenAPI document once, finished as described above."""
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cached:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            cached.update(_finish(document))
        return cached

    setattr(app, "openapi", openapi)  # noqa: B010 (FastAPI's documented override)
