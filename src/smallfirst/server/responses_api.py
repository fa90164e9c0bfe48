"""``POST /v1/responses``: OpenAI's Responses API, stateless, served as a chat request.

A body is validated (:class:`~.responses_input.ResponsesRequest`, its refusals included),
turned into the equivalent chat request, validated again as one, and served by the very
same :class:`~.completions.Completions` that answers ``/v1/chat/completions``: routing,
``auto`` and cascades, API keys and budgets, the response cache, fallbacks, metrics and
the one receipt per request all apply as they do for chat. The receipt's endpoint is
``responses``. What the chat path answers (a JSON body, or its event stream) is reshaped
by :mod:`.responses_output`, keeping the ``x-smallfirst-*`` headers and the ``smallfirst``
receipt field.

It does not store responses: ``previous_response_id`` and the other options that need
stored state are refused before anything runs. It does not generate or choose a model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from smallfirst.errors import InvalidRequestError
from smallfirst.server.completions import Completions
from smallfirst.server.errors import validation_error
from smallfirst.server.protocol import ChatCompletionRequest
from smallfirst.server.responses_input import ResponsesRequest
from smallfirst.server.responses_output import ResponseStream, echo, response_body
from smallfirst.server.serving import ClosingStreamingResponse

__all__ = ["ENDPOINT", "Responses", "as_chat", "sse_events"]

ENDPOINT = "responses"  # the receipts' endpoint name
# a chat parameter a refusal may name, as the Responses request calls it
_PARAMS = {
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
}
_STREAM_HEADERS = ("cache-control", "x-accel-buffering")


def _param(chat_param: str | None) -> str | None:
    if chat_param is None:
        return None
    head, dot, rest = chat_param.partition(".")
    if head == "messages":  # its indices are not input's (instructions, merged tool calls)
        return "input"
    return _PARAMS.get(head, head) + dot + rest


def as_chat(body: ResponsesRequest) -> ChatCompletionRequest:
    """The chat request that serves ``body``; a refusal names the Responses parameter."""
    try:
        return ChatCompletionRequest.model_validate(body.to_chat())
    except ValidationError as exc:
        wire = validation_error(exc.errors())
        raise InvalidRequestError(wire.message, param=_param(wire.param)) from None


class Responses:
    """Serves ``/v1/responses`` through the chat path's :class:`Completions`."""

    def __init__(self, completions: Completions) -> None:
        self.completions = completions

    async def handle(self, request: Request, body: ResponsesRequest) -> Response:
        chat = as_chat(body)
        # a refusal from the chat path (a schema the grammar cannot enforce) names chat's
        # parameter: the client sent the Responses one
        try:
            answer = await self.completions.handle(request, "chat", chat, endpoint=ENDPOINT)
        except InvalidRequestError as exc:
            exc.param = _param(exc.param)
            raise
        options = echo(body.model_dump(exclude_none=True, by_alias=True))
        if isinstance(answer, StreamingResponse):
            events = sse_events(answer.body_iterator, ResponseStream(options))
            headers = _headers(answer.headers, _STREAM_HEADERS)
            return ClosingStreamingResponse(events, media_type="text/event-stream", headers=headers)
        if answer.status_code != 200:  # the client went away (499)
            return answer
        payload = response_body(json.loads(bytes(answer.body)), options)
        return JSONResponse(payload, headers=_headers(answer.headers))


def _headers(headers: Mapping[str, str], also: tuple[str, ...] = ()) -> dict[str, str]:
    """The receipt's ``x-smallfirst-*`` headers (and ``also``), not the body's own."""
    return {k: v for k, v in headers.items() if k.startswith("x-smallfirst-") or k in also}


def _frame(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


async def sse_events(
    chat: AsyncIterable[str | bytes | memoryview], stream: ResponseStream
) -> AsyncGenerator[bytes, None]:
    """The chat stream's events reframed as Responses events; closes the chat stream."""
    pending = b""
    try:
        async for piece in chat:
            pending += piece.encode() if isinstance(piece, str) else bytes(piece)
            while b"\n\n" in pending:
                raw, pending = pending.split(b"\n\n", 1)
                data = raw.removeprefix(b"data: ")
                if data == b"[DONE]" or not data.strip():
                    continue
                for event in stream.feed(json.loads(data)):
                    yield _frame(event)
        for event in stream.finish():
            yield _frame(event)
    finally:
        # shielded: a hang-up cancels this task, and the chat stream (its engine, its
        # receipt) must still close
        close = getattr(chat, "aclose", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await close()
