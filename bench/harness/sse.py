"""A plain httpx client for OpenAI-compatible streams that times each content chunk.

Plain httpx reading SSE lines, not the ``openai`` package: its per-chunk pydantic parsing
costs client CPU that, on a small machine, is taken from the server being measured. The
same client is used for every server compared (smallfirst, ``llama_cpp.server``).

It sends chat completions and reads streams; it starts no server and keeps no statistics
beyond one stream's (see :mod:`harness.stats`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["StreamStats", "decode_rate", "openai_client", "stream_chat"]


def decode_rate(tokens: int, first: float | None, last: float | None) -> float:
    """Decode tokens/s between the first and the last token: (tokens - 1) / (last - first).

    The first token's time belongs to prompt processing (time to first token), so the
    interval from first to last token holds ``tokens - 1`` decode steps.
    """
    if first is None or last is None or tokens < 2 or last <= first:
        return math.nan
    return (tokens - 1) / (last - first)


@dataclass(frozen=True)
class StreamStats:
    """One streamed completion as the client saw it (times are ``time.perf_counter()``)."""

    start: float
    end: float
    first: float | None = None  # first chunk with content
    last: float | None = None  # last chunk with content
    chunks: int = 0  # chunks with content
    usage_tokens: int | None = None  # completion_tokens from the usage chunk, if sent
    prompt_tokens: int | None = None
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens, if sent
    finish_reason: str | None = None
    text: str = ""

    @property
    def tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else self.chunks

    @property
    def ttft_s(self) -> float:
        return self.first - self.start if self.first is not None else math.nan

    @property
    def decode_tps(self) -> float:
        return decode_rate(self.tokens, self.first, self.last)

    def summary(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "token_count_source": "usage" if self.usage_tokens is not None else "chunks",
            "content_chunks": self.chunks,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "finish_reason": self.finish_reason,
            "ttft_ms": round(self.ttft_s * 1000, 3),
            "decode_s": None
            if self.first is None or self.last is None
            else round(self.last - self.first, 4),
            "decode_tps": round(self.decode_tps, 3),
            "total_s": round(self.end - self.start, 4),
        }


def openai_client(base_url: str, timeout_s: float = 600.0) -> httpx.Client:
    """A keep-alive HTTP client for an OpenAI-compatible ``base_url`` (ending in /v1)."""
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        timeout=timeout_s,
        headers={"authorization": "Bearer unused"},
    )


def stream_chat(
    client: httpx.Client,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    *,
    include_usage: bool = True,
    extra_body: Mapping[str, Any] | None = None,
) -> StreamStats:
    """Send one streaming chat completion (temperature 0) and time its content chunks."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    body.update(extra_body or {})
    parts: list[str] = []
    first: float | None = None
    last: float | None = None
    finish: str | None = None
    usage: dict[str, Any] = {}
    start = time.perf_counter()
    with client.stream("POST", "/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.read()[:300]!r}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"stream error: {chunk['error']}")
            choices = chunk.get("choices") or []
            if choices:
                choice = choices[0]
                content = (choice.get("delta") or {}).get("content")
                if content:
                    last = time.perf_counter()
                    first = last if first is None else first
                    parts.append(content)
                finish = choice.get("finish_reason") or finish
            usage = chunk.get("usage") or usage
    return StreamStats(
        start=start,
        end=time.perf_counter(),
        first=first,
        last=last,
        chunks=len(parts),
        usage_tokens=usage.get("completion_tokens"),
        prompt_tokens=usage.get("prompt_tokens"),
        cached_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
        finish_reason=finish,
        text="".join(parts),
    )
