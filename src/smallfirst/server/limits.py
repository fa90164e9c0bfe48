"""Refuse request bodies over a size limit before they are read into memory.

A pure ASGI middleware: it answers 413 at once when ``Content-Length`` is over the limit,
and otherwise counts bytes as the body arrives (chunked uploads have no length) and fails the
request as soon as the count passes the limit. It does not look at anything but sizes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smallfirst.server.errors import http_error


def _message(limit: int) -> str:
    return f"Request body too large: the limit is {limit} bytes."


def _body(limit: int) -> bytes:
    return json.dumps(http_error(413, _message(limit)).body()).encode()


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` so that FastAPI's body parsing passes it on unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _message(limit))


# room for a multipart upload's boundaries and part headers around the file itself
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, max_body_bytes: int, upload_paths: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # paths that take uploads (POST /v1/files): their own, larger limit
        self.upload_paths = dict(upload_paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_paths.get(scope["path"], self.max_body_bytes)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(send, limit)
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = _body(limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
