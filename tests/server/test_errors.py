"""Bad input gets OpenAI's error JSON with the right status and never reaches a model.

Requests refused before any model is touched go through Starlette's in-process
``TestClient`` on an app of their own (fast lane: no socket, no model loaded); an error that
only a model can produce (a prompt over its context) and upstream failures stay on a real
gateway on loopback.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from smallfirst.server.app import create_app
from smallfirst.settings import Settings, UserModel
from tests.conftest import SMOL, LiveServer, free_port, models_data_dir

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app of its own, in process, with the real models directory (so SMOL could load)."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("errors"),
        models_dir=models_data_dir() / "models",
        default_model=SMOL,
        default_router=False,
        max_body_bytes=64 * 1024,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def post(
    client: TestClient | LiveServer, body: Any, path: str = "/v1/chat/completions", **kw: Any
) -> httpx.Response:
    if isinstance(body, (bytes, str)) or hasattr(body, "__next__"):
        kw.update(content=body, headers={"content-type": "application/json"})
    else:
        kw["json"] = body
    if isinstance(client, LiveServer):
        # a loaded 2-core machine can be slow
        return httpx.post(client.url + path, timeout=60, **kw)
    return client.post(path, **kw)


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


def tool(name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters or {}}}


CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def with_format(response_format: Any) -> dict[str, Any]:
    return {"model": SMOL, "messages": MSG, "response_format": response_format}


def json_schema(schema: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


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
    ({"model": SMOL, "messages": MSG, "n": 9}, "n"),  # above MAX_CHOICES
    ({"model": SMOL, "messages": MSG, "n": 0}, "n"),
    ({"model": SMOL, "messages": MSG, "response_format": {"type": "yaml"}}, "response_format.type"),
    # tools: malformed, inconsistent, or offered to a model that does not call them
    ({"model": SMOL, "messages": MSG, "tools": [{"type": "function"}]}, "tools.[0].function"),
    ({"model": SMOL, "messages": MSG, "tools": [tool("get weather")]}, "tools.[0].function.name"),
    ({"model": SMOL, "messages": MSG, "tools": [tool("f"), tool("f")]}, "tools"),
    ({"model": SMOL, "messages": MSG, "tools": [tool("f")]}, "tools"),  # SMOL has none
    ({"model": SMOL, "messages": MSG, "tool_choice": "required"}, "tool_choice"),
    ({"model": SMOL, "messages": MSG, "tools": [tool("f")], "tool_choice": "often"}, None),
    (
        {
            "model": SMOL,
            "messages": MSG,
            "tools": [tool("f")],
            "tool_choice": {"type": "function", "function": {"name": "g"}},
        },
        "tool_choice",
    ),
    (
        {"model": SMOL, "messages": MSG, "tools": [tool("f")], "parallel_tool_calls": "yes"},
        "parallel_tool_calls",
    ),
    (
        {
            "model": SMOL,
            "messages": MSG,
            "tools": [tool("f", {"type": "object", "minProperties": 1})],
            "tool_choice": "required",
        },
        "tools",
    ),
    (
        {
            "model": SMOL,
            "messages": MSG,
            "tools": [tool("f")],
            **with_format({"type": "json_object"}),
        },
        "response_format",
    ),
    ({"model": SMOL, "messages": MSG, "functions": [{"name": "f"}]}, "functions"),
    (
        {"model": SMOL, "messages": [*MSG, {"role": "tool", "content": "31 C"}]},
        "messages.[1].tool_call_id",
    ),
    (
        {"model": SMOL, "messages": [{"role": "user", "content": "x", "tool_calls": [CALL]}]},
        "messages.[0].tool_calls",
    ),
    # response_format json_schema: malformed, or asking what the grammar cannot enforce
    (with_format({"type": "json_schema"}), "response_format.json_schema"),
    (
        with_format({"type": "json_schema", "json_schema": {"schema": {}}}),
        "response_format.json_schema.name",
    ),
    (
        with_format({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}),
        "response_format.json_schema.name",
    ),
    (
        with_format({"type": "json_schema", "json_schema": {"name": "a"}}),
        "response_format.json_schema.schema",
    ),
    (
        with_format({"type": "json_schema", "json_schema": {"name": "a", "schema": []}}),
        "response_format.json_schema.schema",
    ),
    (
        with_format(
            {"type": "json_schema", "json_schema": {"name": "a", "schema": {}, "strict": 1}}
        ),
        "response_format.json_schema.strict",
    ),
    (with_format(json_schema({"type": "integer", "minimum": 1})), "response_format"),
    (with_format(json_schema({"type": "string", "format": "email"})), "response_format"),
    (with_format(json_schema({"$ref": "#/nowhere"})), "response_format"),
    # conformance (#16): as OpenAI answers
    ({"model": SMOL, "messages": MSG, "stream_options": {"include_usage": True}}, "stream_options"),
    (
        {"model": SMOL, "messages": MSG, "stream": False, "stream_options": {}},
        "stream_options",
    ),
    ({"model": SMOL, "messages": MSG, "seed": 2**63}, "seed"),
    ({"model": SMOL, "messages": MSG, "seed": -(2**63) - 1}, "seed"),
    ({"model": SMOL, "prompt": "x", "seed": 2**64}, "seed"),
    ({"model": SMOL, "messages": MSG, "logit_bias": {"10": 101}}, "logit_bias.10"),
    ({"model": SMOL, "messages": MSG, "logit_bias": {"10": -100.5}}, "logit_bias.10"),
    ({"model": SMOL, "messages": MSG, "logit_bias": {"10": True}}, "logit_bias.10"),
    ({"model": SMOL, "messages": MSG, "logit_bias": {"ten": 1}}, None),
    ({"model": SMOL, "messages": MSG, "logit_bias": {"-1": 1}}, None),
    ({"model": SMOL, "messages": MSG, "logit_bias": [1]}, "logit_bias"),
    # found by fuzzing: a boolean or a string where a number or boolean belongs was coerced
    ({"model": SMOL, "messages": MSG, "temperature": False}, "temperature"),
    ({"model": SMOL, "messages": MSG, "max_tokens": "5"}, "max_tokens"),
    ({"model": SMOL, "messages": MSG, "max_tokens": True}, "max_tokens"),
    ({"model": SMOL, "messages": MSG, "stream": "yes"}, "stream"),
    (
        {"model": SMOL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        "messages.[0].content",
    ),
]


@pytest.mark.fast
@pytest.mark.parametrize(("body", "param"), BAD)
def test_invalid_parameters_are_400_naming_the_param(
    fresh: TestClient, body: Any, param: str
) -> None:
    path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
    assert_error(post(fresh, body, path), 400, param=param)


@pytest.mark.fast
def test_malformed_json_and_non_object(fresh: TestClient) -> None:
    assert_error(post(fresh, b'{"model": "x", "messages": ['), 400)
    assert_error(post(fresh, b"[1, 2]"), 400)
    assert_error(post(fresh, b""), 400)


@pytest.mark.fast
def test_unknown_model_is_404(fresh: TestClient) -> None:
    assert_error(post(fresh, {"model": "gpt-9", "messages": MSG}), 404, "model", "model_not_found")
    client = openai.OpenAI(
        base_url=str(fresh.base_url) + "/v1", api_key="x", max_retries=0, http_client=fresh
    )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=MSG)  # type: ignore[arg-type]


@pytest.mark.fast
def test_body_over_limit_is_413(fresh: TestClient) -> None:
    big = {"model": SMOL, "messages": [{"role": "user", "content": "x" * 100_000}]}
    assert_error(post(fresh, big), 413, code="request_too_large")

    def chunked() -> Iterator[bytes]:  # no content-length: counted as it arrives
        yield json.dumps(big).encode()

    assert_error(post(fresh, chunked()), 413, code="request_too_large")


@pytest.mark.fast
def test_unknown_route_is_openai_shaped(fresh: TestClient) -> None:
    assert_error(fresh.get("/v1/nothing"), 404)


@pytest.mark.fast
def test_bad_requests_never_load_a_model_nor_store_a_receipt(fresh: TestClient) -> None:
    refused = [post(fresh, body) for body, _ in BAD]
    refused += [post(fresh, {"model": "gpt-9", "messages": MSG}), post(fresh, b"[1, 2]")]
    assert {r.status_code for r in refused} == {400, 404}
    assert fresh.get("/health").json()["models_loaded"] == []
    assert fresh.get("/smallfirst/v1/receipts").json()["data"] == []


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


def no_models(data_dir: Path, *remotes: UserModel) -> Settings:
    """Settings with a state directory of the test's own and only the given remote models."""
    return Settings(
        data_dir=data_dir, models_dir=data_dir / "models", default_router=False, models=remotes
    )


@pytest.mark.fast
def test_upstream_failure_mid_stream_ends_with_error_event(tmp_path: Path) -> None:
    with DyingUpstream() as up:
        remote = UserModel(name="dying", base_url=f"http://127.0.0.1:{up.port}/v1")
        with LiveServer(no_models(tmp_path, remote)) as server:
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


def test_unreachable_upstream_is_502(  # waits out the retries' backoff: not fast
    tmp_path: Path,
) -> None:
    remote = UserModel(name="gone", base_url=f"http://127.0.0.1:{free_port()}/v1")
    with LiveServer(no_models(tmp_path, remote)) as server:
        for stream in (False, True):
            assert_error(
                post(server, {"model": "gone", "messages": MSG, "stream": stream}),
                502,
                code="upstream_unavailable",
            )
