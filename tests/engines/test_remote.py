"""The remote engine, in front of a real second OpenAI-compatible server on loopback.

The upstream (the ``upstream`` fixture of ``tests/conftest.py``) is llama-cpp-python's own
server (``python -m llama_cpp.server``) on SmolLM2. A recording proxy sits between the gateway
and that server, so what the gateway returns is compared with what the upstream sent for the
same call: two calls to the upstream need not give the same text (its prompt cache changes
the arithmetic), so no test here rests on that.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from smallfirst.catalog import Catalog
from smallfirst.engines.base import GenerationRequest, Sampling, ToolCallDelta, Tools
from smallfirst.engines.remote import _whole, parse_chunk, request_body
from smallfirst.settings import Settings, UserModel
from smallfirst.types import Message, ToolCall
from tests.conftest import LiveServer, free_port


class RecordingProxy:
    """A loopback HTTP proxy to ``upstream`` that keeps every response body as it passed.

    Bytes are recorded before they are passed on, so once the gateway has answered, the
    recording holds at least everything the gateway could have read.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.bodies: list[bytearray] = []
        app = Starlette(routes=[Route("/{path:path}", self.forward, methods=["GET", "POST"])])
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def forward(self, request: Request) -> StreamingResponse:
        client = httpx.AsyncClient(timeout=120)
        sent = client.build_request(
            request.method,
            self.upstream + request.url.path,
            content=await request.body(),
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        response = await client.send(sent, stream=True)
        body = bytearray()
        self.bodies.append(body)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    yield chunk
            finally:
                await response.aclose()
                await client.aclose()

        content_type = response.headers.get("content-type", "application/json")
        return StreamingResponse(relay(), response.status_code, media_type=content_type)

    def __enter__(self) -> RecordingProxy:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "proxy did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def streamed_text(sse: bytes) -> tuple[str, list[str | None]]:
    """The text and the finish reasons of an OpenAI chat stream, as sent."""
    events = [
        json.loads(line[6:])
        for line in sse.decode().splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    choices = [c for e in events for c in e.get("choices", [])]
    text = "".join(c["delta"].get("content") or "" for c in choices)
    return text, [c["finish_reason"] for c in choices if c.get("finish_reason")]


@pytest.fixture(scope="module")
def recorder(upstream: str) -> Iterator[RecordingProxy]:
    with RecordingProxy(upstream) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def remote_client(settings: Settings, recorder: RecordingProxy) -> Iterator[openai.OpenAI]:
    model = UserModel(
        name="smol-remote",
        base_url=recorder.url + "/v1",
        model_id="smol-upstream",
        context_length=2048,
    )
    with LiveServer(settings.model_copy(update={"models": (model,)})) as server:
        yield openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def test_stream_through_remote(remote_client: openai.OpenAI, recorder: RecordingProxy) -> None:
    messages = [{"role": "user", "content": "Name three colours."}]
    chunks = list(
        remote_client.chat.completions.create(
            model="smol-remote",
            messages=messages,
            max_tokens=12,
            temperature=0,
            stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and all(c.model == "smol-remote" for c in chunks)
    # the upstream's text of this very call, passed on unchanged
    sent_text, sent_finishes = streamed_text(recorder.bodies[-1])
    assert text == sent_text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f] == sent_finishes == ["length"]
    # llama_cpp.server ignores include_usage: the gateway says "unknown", it does not guess
    assert chunks[-1].choices == [] and chunks[-1].usage is None
    full = remote_client.chat.completions.create(
        model="smol-remote",
        messages=messages,
        max_tokens=12,
        temperature=0,  # type: ignore[arg-type]
    )
    sent = json.loads(recorder.bodies[-1])
    assert full.choices[0].message.content == sent["choices"][0]["message"]["content"]
    assert full.choices[0].message.content
    assert full.choices[0].finish_reason == sent["choices"][0]["finish_reason"] == "length"
    assert full.usage is not None and full.usage.completion_tokens == 12
    assert full.usage.prompt_tokens == sent["usage"]["prompt_tokens"]


def test_upstream_4xx_keeps_its_status(remote_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        remote_client.chat.completions.create(
            model="smol-remote",
            messages=[{"role": "user", "content": "x " * 5000}],
            max_tokens=5,  # type: ignore[arg-type]
        )


@pytest.mark.fast
def test_request_body_round_trip() -> None:
    req = GenerationRequest(
        sampling=Sampling(
            temperature=0.2,
            max_tokens=9,
            stop=("\n",),
            logprobs=True,
            top_logprobs=2,
            grammar="root ::= object",  # for in-process engines only: not sent
            logit_bias=((7, -100.0), (42, 2.5)),
            response_format='{"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}',
        ),
        messages=(Message("user", "hi"),),
    )
    body = request_body("up", req)
    assert body["model"] == "up" and body["stream"] is True and body["stop"] == ["\n"]
    # the client's response_format goes on unchanged (the upstream enforces it)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {}},
    }
    assert body["top_logprobs"] == 2 and "grammar" not in body
    assert body["logit_bias"] == {"7": -100.0, "42": 2.5}
    assert "seed" not in body
    chunk = parse_chunk(
        {
            "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }
    )
    assert (
        chunk is not None
        and chunk.text == "a"
        and chunk.usage is not None
        and chunk.usage.total_tokens == 4
    )
    assert parse_chunk({"choices": []}) is None


def test_remote_receipts_energy_unknown_or_from_profile(settings: Settings, upstream: str) -> None:
    from smallfirst.settings import ProfileConfig

    model = UserModel(
        name="smol-remote",
        base_url=upstream,
        model_id="smol-upstream",
        price_input_per_mtok_usd=1.0,
        price_output_per_mtok_usd=2.0,
    )
    messages = [{"role": "user", "content": "Hi"}]
    with LiveServer(settings.model_copy(update={"models": (model,)})) as server:
        r = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "smol-remote", "messages": messages, "max_tokens": 4},
            timeout=120,
        ).json()
        receipt = r["smallfirst"]
        assert receipt["engine"] == "remote" and receipt["energy"]["energy_j"] is None
        assert receipt["energy"]["method"] == "unknown" and "profile" in receipt["energy"]["note"]
        usage = r["usage"]
        assert receipt["cost"]["cost_usd"] == pytest.approx(
            (usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6
        )
    profiled = settings.model_copy(
        update={
            "models": (model,),
            "profiles": {
                "smol-remote": ProfileConfig(j_per_input_token=0.1, j_per_output_token=0.5)
            },
        }
    )
    with LiveServer(profiled) as server:
        r = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "smol-remote", "messages": messages, "max_tokens": 4},
            timeout=120,
        ).json()
        energy = r["smallfirst"]["energy"]
        usage = r["usage"]
        assert energy["method"] == "profile"
        assert energy["energy_j"] == pytest.approx(
            usage["prompt_tokens"] * 0.1 + usage["completion_tokens"] * 0.5
        )


def test_a_prefilled_reply_is_refused_before_any_request(settings: Settings) -> None:
    # nothing listens on this port: the refusal must come before any connection
    import asyncio

    from smallfirst.engines.remote import RemoteEngine
    from smallfirst.errors import UnsupportedError
    from smallfirst.server.errors import describe

    remote = UserModel(name="nowhere", base_url=f"http://127.0.0.1:{free_port()}/v1", model_id="x")
    spec = Catalog(settings.model_copy(update={"models": (remote,)})).get("nowhere")
    engine = RemoteEngine(spec, settings)
    request = GenerationRequest(
        Sampling(max_tokens=4), messages=(Message("user", "hi"),), assistant_prefix="Sure"
    )

    async def first() -> None:
        await anext(engine.generate(request))

    with pytest.raises(UnsupportedError) as err:
        asyncio.run(first())
    wire = describe(err.value)
    assert wire is not None and wire.status == 400 and "in-process" in wire.message


@pytest.mark.fast
def test_tools_pass_through_both_ways() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    call = ToolCall("call_1", "f", '{"x": 1}')
    req = GenerationRequest(
        sampling=Sampling(grammar="root ::= call", grammar_triggers=("<tool_call>",)),
        messages=(
            Message("user", "hi"),
            Message("assistant", "", tool_calls=(call,)),
            Message("tool", "42", tool_call_id="call_1"),
        ),
        tools=Tools(json.dumps(tools), choice="function", function="f", parallel=False),
    )
    body = request_body("up", req)
    # the client's tools and choice as sent; the local grammar stays home
    assert body["tools"] == tools and body["parallel_tool_calls"] is False
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
        ],
    }
    assert body["messages"][2] == {"role": "tool", "content": "42", "tool_call_id": "call_1"}
    assert "grammar" not in json.dumps(body)
    auto = request_body("up", dataclasses.replace(req, tools=Tools(json.dumps(tools))))
    assert auto["tool_choice"] == "auto" and "parallel_tool_calls" not in auto
    # a streamed call's pieces, and a whole answer's calls, come back as deltas
    piece = parse_chunk(
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 1, "id": "c", "type": "function", "function": {"name": "f"}}
                        ]
                    },
                    "finish_reason": None,
                }
            ]
        }
    )
    assert piece is not None and piece.tool_calls == (ToolCallDelta(1, "c", "f", ""),)
    whole = _whole(
        "up",
        json.dumps(
            {
                "choices": [
                    {
                        "message": {
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "c",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": "{}"},
                                }
                            ],
                        },
                        "finish_reason": "tool_calls",
                    }
                ]
            }
        ).encode(),
    )
    assert whole.tool_calls == (ToolCallDelta(0, "c", "f", "{}"),)
    assert whole.finish_reason == "tool_calls" and whole.text == ""
