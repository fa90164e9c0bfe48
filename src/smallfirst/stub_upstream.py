"""A tiny OpenAI-compatible upstream on loopback, for tests and benchmarks that need a remote
model which answers at once and loads nothing.

:class:`StubUpstream` serves ``/v1/chat/completions`` and ``/v1/completions`` (body and
stream) and ``/v1/models`` from a Starlette app in a uvicorn thread. Each answer is the
words of :data:`REPLY`, one per token, cut at ``max_tokens``; usage counts words. It does
not validate requests beyond what it needs, does not sample, and misbehaves only when told
to (``delay_s`` before answering). Nothing under the gateway imports it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from smallfirst.testing import free_port

__all__ = ["REPLY", "StubUpstream"]

REPLY = "Small models answer most questions well enough and spend far less energy doing so."


def _words(body: dict[str, Any]) -> tuple[list[str], str]:
    words = REPLY.split(" ")
    limit = body.get("max_tokens")
    if isinstance(limit, int) and 0 <= limit < len(words):
        return words[:limit], "length"
    return words, "stop"


def _prompt_tokens(body: dict[str, Any]) -> int:
    if "messages" in body:
        text = " ".join(str(m.get("content") or "") for m in body["messages"])
    else:
        text = str(body.get("prompt") or "")
    return max(1, len(text.split()))


class StubUpstream:
    """Use as a context manager; ``url`` is the base URL a ``UserModel`` takes."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.port = free_port()
        self.delay_s = delay_s
        self.requests = 0
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._text, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    async def _chat(self, request: Request) -> Response:
        return await self._answer(request, chat=True)

    async def _text(self, request: Request) -> Response:
        return await self._answer(request, chat=False)

    async def _answer(self, request: Request, chat: bool) -> Response:
        self.requests += 1
        try:
            body = await request.json()
        except ClientDisconnect:  # the gateway went away (the crash loop kills it)
            return Response(status_code=499)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        words, finish = _words(body)
        usage = {
            "prompt_tokens": _prompt_tokens(body),
            "completion_tokens": len(words),
            "total_tokens": _prompt_tokens(body) + len(words),
        }
        head = {"id": "stub-1", "created": int(time.time()), "model": "stub"}
        if body.get("stream"):
            return StreamingResponse(
                self._events(head, words, finish, usage, chat), media_type="text/event-stream"
            )
        text = " ".join(words)
        if chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
        else:
            choice = {"index": 0, "text": text}
        choice["finish_reason"] = finish
        obj = "chat.completion" if chat else "text_completion"
        return JSONResponse({**head, "object": obj, "choices": [choice], "usage": usage})

    async def _events(
        self,
        head: dict[str, Any],
        words: list[str],
        finish: str,
        usage: dict[str, int],
        chat: bool,
    ) -> AsyncIterator[bytes]:
        obj = "chat.completion.chunk" if chat else "text_completion"
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            choice: dict[str, Any] = (
                {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
            )
            choice["finish_reason"] = finish if i == len(words) - 1 else None
            yield f"data: {json.dumps({**head, 'object': obj, 'choices': [choice]})}\n\n".encode()
        if not words:
            choice = {"index": 0, "delta": {}} if chat else {"index": 0, "text": ""}
            choice["finish_reason"] = finish
            yield f"data: {json.dumps({**head, 'object': obj, 'choices': [choice]})}\n\n".encode()
        tail = {**head, "object": obj, "choices": [], "usage": usage}
        yield f"data: {json.dumps(tail)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    def __enter__(self) -> StubUpstream:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("stub upstream did not start")
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
