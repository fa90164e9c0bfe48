"""Bad input gets OpenAI's error JSON with the right status and never reaches a model."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from smallfirst.settings import Settings, UserModel
from tests.conftest import SMOL, LiveServer, free_port

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fresh(settings: Settings) -> Iterator[LiveServer]:
    """A gateway of its own, so we can check that no model was ever loaded."""
    with LiveServer(settings.model_copy(update={"max_body_bytes": 64 * 1024})) as server:
        yield server


def post(
    server: LiveServer, body: Any, path: str = "/v1/chat/completions", **kw: Any
) -> httpx.Response:
    kw.setdefault("timeout", 60)  # a loaded 2-core machine can be slow
    if isinstance(body, (bytes, str)) or hasattr(body, "__next__"):
        return httpx.post(
            server.url + path, content=body, headers={"content-type": "application/json"}, **kw
        )
    return httpx.post(server.url + path, json=body, **kw)


def assert_error(
    r: httpx.Response, status: int, param: str | None = None, code: str | None = None
) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param
    if code is not None:
        assert err["code"] == code


BAD: list[tuple[Any, str | None]] = [
    ({"model": SMOL}, "messages"),
    ({"model": SMOL, "messages": []}, "messages"),
    ({"messages": MSG}, "model"),
    ({"model": SMOL, "messages": [{"role": "wizard", "content": "x"}]}, "messages.[0].role"),
    ({"model": SMOL, "messages": MSG, "temperature": 2.5}, "temperature"),
    ({"model": SMOL, "messages": MSG, "top_p": 0}, "top_p"),
    ({"model": SMOL, "messages": MSG, "max_tokens": 0}, "max_tokens"),
    ({"model": SMOL, "messages": MSG, "max_completion_tokens": -3}, "max_completion_tokens"),
    ({"model": SMOL, "messages": MSG, "presence_penalty": 3}, "presence_penalty"),
    ({"model": SMOL, "messages": MSG, "frequency_penalty": -2.5}, "frequency_penalty"),
    ({"model": SMOL, "messages": MSG, "top_logprobs": 30, "logprobs": True}, "top_logprobs"),
    ({"model": SMOL, "messages": MSG, "top_logprobs": 2}, "top_logprobs"),
    ({"model": SMOL, "messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": SMOL, "messages": MSG, "n": 2}, "n"),
    ({"model": SMOL, "messages": MSG, "response_format": {"type": "yaml"}}, "response_format.type"),
    ({"model": SMOL, "messages": MSG, "tools": [{"type": "function"}]}, "tools"),
    (
        {"model": SMOL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        "messages.[0].content",
    ),
]


@pytest.mark.parametrize(("body", "param"), BAD)
def test_invalid_parameters_are_400_naming_the_param(
    fresh: LiveServer, body: Any, param: str
) -> None:
    assert_error(post(fresh, body), 400, param=param)


def test_malformed_json_and_non_object(fresh: LiveServer) -> None:
    assert_error(post(fresh, b'{"model": "x", "messages": ['), 400)
    assert_error(post(fresh, b"[1, 2]"), 400)
    assert_error(post(fresh, b""), 400)


def test_unknown_model_is_404(fresh: LiveServer) -> None:
    assert_error(post(fresh, {"model": "gpt-9", "messages": MSG}), 404, "model", "model_not_found")
    client = openai.OpenAI(base_url=fresh.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=MSG)  # type: ignore[arg-type]


def test_body_over_limit_is_413(fresh: LiveServer) -> None:
    big = {"model": SMOL, "messages": [{"role": "user", "content": "x" * 100_000}]}
    assert_error(post(fresh, big), 413, code="request_too_large")

    def chunked() -> Iterator[bytes]:  # no content-length: counted as it arrives
        yield json.dumps(big).encode()

    assert_error(post(fresh, chunked()), 413, code="request_too_large")


def test_unknown_route_is_openai_shaped(fresh: LiveServer) -> None:
    assert_error(httpx.get(fresh.url + "/v1/nothing"), 404)


def test_bad_requests_never_loaded_a_model(fresh: LiveServer) -> None:
    # runs after the tests above in this module
    assert fresh.app.state.pool.loaded_models() == []


def test_prompt_longer_than_context(client: openai.OpenAI, settings: Settings) -> None:
    long = "word " * (settings.n_ctx + 100)
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model=SMOL, messages=[{"role": "user", "content": long}], stream=stream
            )
        assert info.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        client.chat.completions.create(model=SMOL, messages=MSG, max_tokens=settings.n_ctx)


class DyingUpstream:
    """An OpenAI-compatible stub that streams one chunk and then drops the connection."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        chunk = {"choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}]}
        data = f"data: {json.dumps(chunk)}\n\n".encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            + b"transfer-encoding: chunked\r\n\r\n"
            + f"{len(data):x}\r\n".encode()
            + data
            + b"\r\n"
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.transport.abort()

    def __enter__(self) -> DyingUpstream:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self.handle, "127.0.0.1", self.port), self.loop
        ).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_upstream_failure_mid_stream_ends_with_error_event(settings: Settings) -> None:
    with DyingUpstream() as up:
        remote = UserModel(name="dying", base_url=f"http://127.0.0.1:{up.port}/v1")
        with LiveServer(settings.model_copy(update={"models": (remote,)})) as server:
            with httpx.stream(
                "POST",
                server.url + "/v1/chat/completions",
                json={"model": "dying", "messages": MSG, "stream": True},
                timeout=30,
            ) as r:
                assert r.status_code == 200
                events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
            assert json.loads(events[1])["choices"][0]["delta"]["content"] == "partial"
            assert json.loads(events[-2])["error"]["code"] == "upstream_unavailable"
            assert events[-1] == "[DONE]"
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.APIError):
                list(client.chat.completions.create(model="dying", messages=MSG, stream=True))  # type: ignore[arg-type]


def test_unreachable_upstream_is_502(settings: Settings) -> None:
    remote = UserModel(name="gone", base_url=f"http://127.0.0.1:{free_port()}/v1")
    with LiveServer(settings.model_copy(update={"models": (remote,)})) as server:
        for stream in (False, True):
            assert_error(
                post(server, {"model": "gone", "messages": MSG, "stream": stream}),
                502,
                code="upstream_unavailable",
            )
