"""A tiny OpenAI-compatible upstream on loopback, for tests and benchmarks that need a remote
model which loads nothing and fails only on purpose.

:class:`StubUpstream` serves ``/v1/chat/completions`` and ``/v1/completions`` (body and
stream) and ``/v1/models`` from a Starlette app in a uvicorn thread. Each answer is the
words of ``reply`` (:data:`REPLY` unless told), one per token, cut at ``max_tokens``; usage
counts words. By default it answers at once; it can be told to wait ``delay_s`` before
answering, to dribble a stream ``token_delay_s`` per token, and to follow a *script*: each
completion call takes the next step, an HTTP status with headers to fail with, ``"break"``
to stream one chunk and then drop the connection (a body has nothing to cut: it answers),
or ``"ok"``; once the script runs out every call answers. A chat request with ``tools``
(and a ``tool_choice`` other than none) is answered with one call of the named or first
function, its arguments ``{"reply": <those words>}``. The monotonic time of each call
is kept in ``calls``. It does not validate requests beyond what it needs and does not
sample. Nothing under the gateway imports it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from smallfirst.testing import ThreadedServer

__all__ = ["REPLY", "Step", "StubUpstream"]

REPLY = "Small models answer most questions well enough and spend far less energy doing so."

# (status, headers) fails with that status; "break" cuts a stream after its first chunk.
Step = tuple[int, dict[str, str]] | Literal["ok", "break"]


def _words(reply: str, body: dict[str, Any]) -> tuple[list[str], str]:
    words = reply.split(" ")
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


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def _tool_call(body: dict[str, Any], words: list[str]) -> dict[str, Any] | None:
    """With ``tools`` (and a choice other than none): a call of the named or first function,
    its arguments ``{"reply": <the words>}``."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    name = choice["function"]["name"] if isinstance(choice, dict) else tools[0]["function"]["name"]
    arguments = json.dumps({"reply": " ".join(words)})
    return {
        "id": "call_stub",
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def _call_answer(
    head: dict[str, Any], call: dict[str, Any], usage: dict[str, int], stream: bool
) -> Response:
    if not stream:
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        return JSONResponse(
            {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        )
    obj = {**head, "object": "chat.completion.chunk"}
    first = {**call, "index": 0, "function": {"name": call["function"]["name"], "arguments": ""}}
    rest = {"index": 0, "function": {"arguments": call["function"]["arguments"]}}
    events = [
        _sse(
            {
                **obj,
                "choices": [{"index": 0, "delta": {"tool_calls": [first]}, "finish_reason": None}],
            }
        ),
        _sse(
            {
                **obj,
                "choices": [
                    {"index": 0, "delta": {"tool_calls": [rest]}, "finish_reason": "tool_calls"}
                ],
            }
        ),
        _sse({**obj, "choices": [], "usage": usage}),
        b"data: [DONE]\n\n",
    ]
    return StreamingResponse(iter(events), media_type="text/event-stream")


class StubUpstream(ThreadedServer):
    """Use as a context manager; ``url`` is the base URL a ``UserModel`` takes.

    ``script`` may be replaced between requests (``stub.script = [(400, {})]``).
    """

    def __init__(
        self,
        script: Sequence[Step] = (),
        *,
        reply: str = REPLY,
        delay_s: float = 0.0,
        token_delay_s: float = 0.0,
    ) -> None:
        self.script: list[Step] = list(script)
        self.reply = reply
        self.delay_s = delay_s
        self.token_delay_s = token_delay_s
        self.calls: list[float] = []  # monotonic time of each completion call
        self._lock = threading.Lock()  # tests read and replace the script from their thread
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._text, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        super().__init__(app, what="stub upstream", stop_timeout_s=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> int:
        """Completion calls answered or failed so far."""
        return len(self.calls)

    def _next(self) -> Step:
        with self._lock:
            self.calls.append(time.monotonic())
            return self.script.pop(0) if self.script else "ok"

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    async def _chat(self, request: Request) -> Response:
        return await self._answer(request, chat=True)

    async def _text(self, request: Request) -> Response:
        return await self._answer(request, chat=False)

    async def _answer(self, request: Request, chat: bool) -> Response:
        try:
            body = await request.json()
        except ClientDisconnect:  # the gateway went away (the crash loop kills it)
            return Response(status_code=499)
        step = self._next()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if isinstance(step, tuple):
            status, headers = step
            error = {"error": {"message": f"stub failing with {status}", "type": "x"}}
            return JSONResponse(error, status_code=status, headers=headers)
        words, finish = _words(self.reply, body)
        usage = {
            "prompt_tokens": _prompt_tokens(body),
            "completion_tokens": len(words),
            "total_tokens": _prompt_tokens(body) + len(words),
        }
        head = {"id": "stub-1", "created": int(time.time()), "model": "stub"}
        call = _tool_call(body, words) if chat else None
        if call is not None:
            return _call_answer(head, call, usage, bool(body.get("stream")))
        if body.get("stream"):
            events = self._events(head, words, finish, usage, chat, cut=step == "break")
            return StreamingResponse(events, media_type="text/event-stream")
        if self.token_delay_s:  # a body takes as long as its stream would have
            await asyncio.sleep(self.token_delay_s * len(words))
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
        cut: bool,
    ) -> AsyncIterator[bytes]:
        obj = "chat.completion.chunk" if chat else "text_completion"
        for i, word in enumerate(words):
            if i and self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            piece = word if i == 0 else " " + word
            choice: dict[str, Any] = (
                {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
            )
            choice["finish_reason"] = finish if i == len(words) - 1 and not cut else None
            yield _sse({**head, "object": obj, "choices": [choice]})
            if cut:
                raise RuntimeError("stub drops the stream on purpose")
        if not words:
            choice = {"index": 0, "delta": {}} if chat else {"index": 0, "text": ""}
            choice["finish_reason"] = finish
            yield _sse({**head, "object": obj, "choices": [choice]})
        yield _sse({**head, "object": obj, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"
