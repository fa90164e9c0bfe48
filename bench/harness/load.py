"""Load for the resilience benchmarks: one request and what came of it, and a process's vitals.

:func:`send` sends one chat completion to the gateway (a body, a stream read to its end, or
a stream the client drops after its first chunk) and returns an :class:`Outcome`: when it
started, how long it took, the status, the error code, and the receipt id the client was
acknowledged with. It never raises for an HTTP or transport error; those are outcomes.

:class:`Vitals` samples a process's resident memory, open file descriptors and threads
from ``/proc`` on a timer thread. Neither decides what is an error for a benchmark.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["Outcome", "Vitals", "VitalsSample", "send"]

PROMPTS = (
    "Say hello in one short sentence.",
    "Name a colour.",
    "What is two plus two?",
    "Give me one word that rhymes with cat.",
)


@dataclass(frozen=True)
class Outcome:
    """One request as the client saw it (times from ``time.monotonic``)."""

    kind: str  # the caller's label, e.g. the model
    stream: bool
    started_s: float
    latency_s: float
    status: int  # 0: no HTTP status (transport error)
    code: str | None = None  # the error body's code, or the transport error's class
    receipt_id: str | None = None  # set when the client was acknowledged with a receipt
    dropped: bool = False  # the client hung up on purpose after the first chunk
    retry_after: str | None = None  # the Retry-After header of a refusal

    @property
    def overloaded(self) -> bool:
        return self.status == 429 and self.code == "server_overloaded"


def _error_code(r: httpx.Response) -> str | None:
    try:
        err = r.json().get("error") or {}
    except (json.JSONDecodeError, AttributeError):
        return "unparsable-error-body"
    return str(err.get("code") or err.get("type") or "")


def _read_stream(r: httpx.Response, drop: bool) -> tuple[str | None, str | None, bool]:
    """(receipt id, error code, dropped) from an SSE response, hanging up early if ``drop``."""
    receipt: str | None = None
    for line in r.iter_lines():
        if not line.startswith("data: {"):
            continue
        data = json.loads(line[6:])
        if "error" in data:
            return None, str(data["error"].get("code") or data["error"].get("type")), False
        if drop:
            return None, None, True  # leaving the block closes the connection
        if "smallfirst" in data:
            receipt = data["smallfirst"].get("receipt_id")
    return receipt, None if receipt else "stream-ended-without-receipt", False


def send(
    http: httpx.Client,
    model: str,
    *,
    kind: str | None = None,
    stream: bool = False,
    drop: bool = False,
    max_tokens: int = 16,
    prompt: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Outcome:
    """One chat completion; ``drop`` (streams only) hangs up after the first chunk."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
        "messages": [{"role": "user", "content": prompt or PROMPTS[0]}],
        **(extra or {}),
    }
    label = kind or model
    t0 = time.monotonic()
    try:
        if not stream:
            r = http.post("/v1/chat/completions", json=body)
            ok = r.status_code == 200
            rid = r.headers.get("x-smallfirst-receipt-id") if ok else None
            code = None if ok else _error_code(r)
            wait = r.headers.get("retry-after")
            return Outcome(
                label, False, t0, time.monotonic() - t0, r.status_code, code, rid, retry_after=wait
            )
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                r.read()
                code, wait = _error_code(r), r.headers.get("retry-after")
                took = time.monotonic() - t0
                return Outcome(label, True, t0, took, r.status_code, code, retry_after=wait)
            rid, code, dropped = _read_stream(r, drop)
        return Outcome(label, True, t0, time.monotonic() - t0, 200, code, rid, dropped)
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return Outcome(label, stream, t0, time.monotonic() - t0, 0, type(exc).__name__)


@dataclass(frozen=True)
class VitalsSample:
    at_s: float  # monotonic
    rss_mb: float
    fds: int
    threads: int
    load_1m: float  # the machine's load average: other work shows up in latency


def _read_vitals(pid: int) -> VitalsSample:
    rss_kb, threads = 0, 0
    with Path(f"/proc/{pid}/status").open() as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    return VitalsSample(time.monotonic(), rss_kb / 1024, fds, threads, os.getloadavg()[0])


@dataclass
class Vitals:
    """Samples of ``pid`` every ``every_s`` while the block runs (``with Vitals(pid):``)."""

    pid: int
    every_s: float = 5.0
    samples: list[VitalsSample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> VitalsSample | None:
        try:
            s = _read_vitals(self.pid)
        except OSError:  # the process is gone
            return None
        self.samples.append(s)
        return s

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def __enter__(self) -> Vitals:
        self.sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.every_s + 1)
        self.sample()
