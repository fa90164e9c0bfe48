"""A scripted OpenAI-compatible upstream on loopback, for tests of failures on purpose.

Each call to ``/v1/chat/completions`` takes the next step of its script: an HTTP status
(with headers) to fail with, ``"break"`` to stream one chunk and then drop the connection,
or ``"ok"`` to answer ``reply`` (streamed when asked). When the script runs out, every call
answers ``"ok"``. The time of every call is kept, so tests can measure the waits between.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import free_port

Step = tuple[int, dict[str, str]] | str


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


class StubUpstream:
    def __init__(self, script: Sequence[Step] = (), reply: str = "stub says hi") -> None:
        self.script = list(script)
        self.reply = reply
        self.calls: list[float] = []  # monotonic time of each call
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _next(self) -> Step:
        with self._lock:
            self.calls.append(time.monotonic())
            return self.script.pop(0) if self.script else "ok"

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        step = self._next()
        if isinstance(step, tuple):
            status, headers = step
            error = {"error": {"message": f"stub failing with {status}", "type": "x"}}
            return JSONResponse(error, status_code=status, headers=headers)
        base = {"id": "stub-1", "created": 0, "model": body.get("model", "stub")}
        if not body.get("stream"):
            return JSONResponse(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": self.reply},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                }
            )

        async def events() -> AsyncIterator[bytes]:
            chunk = {**base, "object": "chat.completion.chunk"}
            delta = {"index": 0, "delta": {"content": self.reply}, "finish_reason": None}
            yield _sse({**chunk, "choices": [delta]})
            if step == "break":
                raise RuntimeError("stub drops the stream on purpose")
            end = {"index": 0, "delta": {}, "finish_reason": "stop"}
            yield _sse({**chunk, "choices": [end]})
            usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
            yield _sse({**chunk, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def __enter__(self) -> StubUpstream:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "stub did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def running(script: Sequence[Step] = (), reply: str = "stub says hi") -> Iterator[StubUpstream]:
    """A stub for a fixture: ``yield from running(...)``."""
    with StubUpstream(script, reply) as stub:
        yield stub
