"""The remote engine: any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, a hosted API).

Requests are translated back into OpenAI's wire format and streamed from the upstream with
httpx; the upstream's chunks are turned into :class:`Chunk` so the gateway treats every
engine alike. A streaming client's request is streamed from the upstream (asking for
``include_usage``; servers that ignore it leave usage unknown, reported as null rather than
guessed); a non-streaming one is sent as one request, whose body always carries usage.

Upstream failures become domain errors: a refused connection is
:class:`~smallfirst.errors.UpstreamUnavailableError`, a timeout
:class:`~smallfirst.errors.UpstreamTimeoutError`, a 5xx or a garbled answer
:class:`~smallfirst.errors.UpstreamError`, and a 4xx an
:class:`~smallfirst.errors.UpstreamRefusedError` keeping its status and the upstream's
message (it is the request's fault, e.g. a context overflow). A failure after the first
chunk is raised mid-stream and the server ends the stream with an error event.

Before the first byte, a 429, a 5xx or a refused connection is retried (:mod:`.retrying`);
after it, nothing is. At most ``remote_max_in_flight`` requests are open to the upstream at
once; more wait in the engine's :class:`~smallfirst.engines.admission.Admission` (bounded,
timed), wrapped around the request loop by :meth:`RemoteEngine.generate`.

This module does not pick models; it talks to one endpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from smallfirst.catalog import ModelSpec
from smallfirst.engines.admission import Admission, AdmissionObserver, guarded
from smallfirst.engines.base import (
    Chunk,
    GenerationRequest,
    TokenLogprob,
    ToolCallDelta,
    Tools,
    TopLogprob,
)
from smallfirst.engines.retrying import Retrying, error_message
from smallfirst.errors import (
    UnsupportedError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from smallfirst.settings import Settings
from smallfirst.types import Message, Usage

log = logging.getLogger(__name__)


def request_body(model_id: str, request: GenerationRequest) -> dict[str, Any]:
    """The OpenAI request for ``request``; when streaming, with usage in the last chunk."""
    s = request.sampling
    body: dict[str, Any] = {
        "model": model_id,
        "stream": request.stream,
        "temperature": s.temperature,
        "top_p": s.top_p,
    }
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    if request.messages is not None:
        body["messages"] = [_wire_message(m) for m in request.messages]
        if request.tools is not None:
            body.update(_wire_tools(request.tools))
    else:
        body["prompt"] = request.prompt or ""
        if request.echo:
            body["echo"] = True
    optional = {
        "max_tokens": s.max_tokens,
        "seed": s.seed,
        "stop": list(s.stop) or None,
        "presence_penalty": s.presence_penalty or None,
        "frequency_penalty": s.frequency_penalty or None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if s.logit_bias:
        body["logit_bias"] = {str(token): bias for token, bias in s.logit_bias}
    if s.response_format is not None:
        body["response_format"] = json.loads(s.response_format)  # as the client sent it
    if s.logprobs:
        if request.messages is not None:
            body["logprobs"] = True
            body["top_logprobs"] = s.top_logprobs
        else:
            body["logprobs"] = s.top_logprobs
    return body


def _wire_message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _wire_tools(tools: Tools) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` as the client sent them."""
    out: dict[str, Any] = {"tools": json.loads(tools.definitions)}
    if tools.choice == "function":
        out["tool_choice"] = {"type": "function", "function": {"name": tools.function}}
    else:
        out["tool_choice"] = tools.choice
    if tools.parallel is not None:
        out["parallel_tool_calls"] = tools.parallel
    return out


def _tool_deltas(raw: Any) -> tuple[ToolCallDelta, ...]:
    """An upstream's ``tool_calls`` (whole, or streamed pieces) as deltas."""
    if not isinstance(raw, list):
        return ()
    out = []
    for k, call in enumerate(raw):
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        out.append(
            ToolCallDelta(
                index=int(call.get("index", k)),
                id=call.get("id"),
                name=function.get("name"),
                arguments=function.get("arguments") or "",
            )
        )
    return tuple(out)


def _chat_logprobs(raw: Any) -> tuple[TokenLogprob, ...]:
    if not isinstance(raw, dict) or not raw.get("content"):
        return ()
    return tuple(
        TokenLogprob(
            token=e.get("token", ""),
            logprob=float(e.get("logprob", 0.0)),
            bytes=tuple(e.get("bytes") or e.get("token", "").encode()),
            top=tuple(
                TopLogprob(
                    t.get("token", ""), float(t.get("logprob", 0.0)), tuple(t.get("bytes") or ())
                )
                for t in e.get("top_logprobs") or ()
            ),
        )
        for e in raw["content"]
    )


def parse_chunk(data: dict[str, Any]) -> Chunk | None:
    """One upstream SSE payload as a Chunk (None when it carries nothing for us)."""
    usage = None
    if isinstance(data.get("usage"), dict):
        u = data["usage"]
        usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
    choices = data.get("choices") or []
    if not choices:
        return Chunk(usage=usage) if usage else None
    choice = choices[0]
    calls: tuple[ToolCallDelta, ...] = ()
    if "delta" in choice:
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        calls = _tool_deltas(delta.get("tool_calls"))
    else:
        text = choice.get("text") or ""
    return Chunk(
        text=text,
        logprobs=_chat_logprobs(choice.get("logprobs")),
        finish_reason=choice.get("finish_reason"),
        usage=usage,
        tool_calls=calls,
    )


def _whole(name: str, raw: bytes) -> Chunk:
    """A non-streamed upstream response as one final chunk."""
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        raise UpstreamError(f"{name}: upstream sent an unexpected response") from None
    message = choice.get("message")
    text = (message or {}).get("content") if message is not None else choice.get("text")
    chunk = parse_chunk(
        {
            "choices": [
                {
                    "delta": {
                        "content": text or "",
                        "tool_calls": (message or {}).get("tool_calls"),
                    },
                    "logprobs": choice.get("logprobs"),
                    "finish_reason": choice.get("finish_reason") or "stop",
                }
            ],
            "usage": data.get("usage"),
        }
    )
    assert chunk is not None
    return chunk


class RemoteEngine:
    """A model served by an OpenAI-compatible HTTP server."""

    def __init__(
        self, spec: ModelSpec, settings: Settings, observer: AdmissionObserver | None = None
    ) -> None:
        assert spec.remote is not None
        self.spec = spec
        self.remote = spec.remote
        headers = {}
        if spec.remote.api_key_env:
            key = os.environ.get(spec.remote.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
            else:
                log.warning(
                    "%s: environment variable %s is not set; calling without a key",
                    spec.name,
                    spec.remote.api_key_env,
                )
        self._client = httpx.AsyncClient(
            base_url=spec.remote.base_url,
            headers=headers,
            timeout=httpx.Timeout(
                settings.remote_timeout_s, connect=settings.remote_connect_timeout_s
            ),
        )
        self._retrying = Retrying(spec.name, self._client, settings)
        self.admission = Admission(
            spec.name,
            settings.remote_max_in_flight,
            settings.max_queue,
            settings.queue_timeout_s,
            observer,
        )
        self.in_flight = 0
        self.loaded = True
        self.memory_bytes = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """The upstream's answer, once the admission lets the request through."""
        return guarded(self.admission, self._generate(request))

    async def _generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        if request.assistant_prefix is not None:
            # the OpenAI API has no way to start the assistant's reply for it
            raise UnsupportedError(
                f"{self.spec.name}: a prefilled assistant reply needs an in-process model",
                param="model",
            )
        if request.n > 1:
            # the upstream's choices would come back interleaved in its own framing; relaying
            # them is not done yet
            raise UnsupportedError(
                f"{self.spec.name}: n > 1 needs an in-process model; send n=1", param="n"
            )
        path = "/chat/completions" if request.messages is not None else "/completions"
        body = request_body(self.remote.model_id, request)
        name = self.spec.name
        self.in_flight += 1
        try:
            response = await self._retrying.open(path, body)
            try:
                if not request.stream:
                    yield _whole(name, await response.aread())
                    return
                async with contextlib.aclosing(_stream_chunks(name, response)) as chunks:
                    async for chunk in chunks:
                        yield chunk
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise UpstreamTimeoutError(f"{name}: upstream timed out") from None
        except httpx.HTTPError as exc:
            raise UpstreamUnavailableError(f"{name}: upstream unreachable: {exc}") from None
        finally:
            self.in_flight -= 1


async def _stream_chunks(name: str, response: httpx.Response) -> AsyncGenerator[Chunk, None]:
    """The upstream's SSE stream as chunks, a finish reason merged with the usage after it."""
    finish_seen: Chunk | None = None
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            # Read on to the end of the body rather than break: a response
            # left unread makes httpx close the connection instead of reusing it.
            continue
        try:
            data = json.loads(payload)
        except ValueError:
            raise UpstreamError(f"{name}: upstream sent invalid JSON") from None
        if "error" in data:
            raise UpstreamError(f"{name}: upstream error: {error_message(payload.encode())}")
        chunk = parse_chunk(data)
        if chunk is None:
            continue
        if chunk.finish_reason is not None and chunk.usage is None:
            # Usage normally follows in a separate, choice-less chunk.
            finish_seen = chunk
            continue
        if finish_seen is not None:
            chunk = Chunk(
                text=finish_seen.text + chunk.text,
                logprobs=finish_seen.logprobs + chunk.logprobs,
                finish_reason=finish_seen.finish_reason,
                usage=chunk.usage,
            )
            finish_seen = None
        yield chunk
    if finish_seen is not None:
        yield finish_seen
