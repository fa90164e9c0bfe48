"""What the gateway adds per request, measured against a stub upstream that costs ~nothing.

A stub OpenAI-compatible server (this script with ``--stub-server``: a bare asyncio HTTP/1.1
server with keep-alive and canned bytes) answers ``POST /v1/chat/completions``: a JSON body,
or, when the request says ``"stream": true``, an SSE stream of a role chunk, one content
chunk, a finish chunk, a usage chunk and ``[DONE]``. ``smallfirst serve`` runs in its own
process with the stub declared as a remote model; its remote engine asks the stub for a
stream when its own client streams, and for one JSON body otherwise.

From this process an ``httpx`` client (keep-alive) sends the same streaming chat request
(``stream_options.include_usage``; ``--non-stream``: a plain one) either straight to the
stub or through one of two gateways (identical but for ``receipts = false`` / ``true``) and
reads the whole response. After a warm-up, blocks of ``--block`` sequential requests rotate
over the three targets until each has had ``--n``; latency p50/p99 of each, the latency the
gateway adds (receipts off minus direct) and the latency metering adds (receipts on minus
off), and requests/s, sequential and with ``--concurrency`` concurrent clients (asyncio,
one connection each; again rotating blocks). Targets: gateway p50 added <= 2 ms, metering
p50 added <= 0.5 ms.

    .venv/bin/python bench/overhead.py [--quick] [--n 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx

from harness import PYTHON, script
from harness.gateway import Gateway, running_gateway
from harness.procs import Child, scratch_dir
from harness.stats import fmt, summarize
from smallfirst.testing import free_port

TARGET_P50_ADDED_MS = 2.0  # issue: the gateway adds at most 2 ms at p50
TARGET_METERING_P50_MS = 0.5  # issue: receipts add at most 0.5 ms at p50
STUB_MODEL = "stub"
STUB_TEXT = "Hello from the stub."

# --------------------------------------------------------------------------- the stub


def _stub_responses() -> dict[str, bytes]:
    created = int(time.time())
    head: dict[str, Any] = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": created,
        "model": STUB_MODEL,
        "system_fingerprint": None,
    }

    def event(obj: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **head,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    usage = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
    sse = b"".join(
        [
            event(choice({"role": "assistant", "content": ""})),
            event(choice({"content": STUB_TEXT})),
            event(choice({}, "stop")),
            event({**head, "choices": [], "usage": usage}),
            b"data: [DONE]\n\n",
        ]
    )
    full = json.dumps(
        {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": STUB_TEXT, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    ).encode()
    models = json.dumps(
        {"object": "list", "data": [{"id": STUB_MODEL, "object": "model", "owned_by": "stub"}]}
    ).encode()

    def response(status: str, ctype: str, body: bytes) -> bytes:
        return (
            f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode() + body

    error = json.dumps({"error": {"message": "not found", "type": "invalid_request_error"}})
    return {
        "sse": response("200 OK", "text/event-stream", sse),
        "json": response("200 OK", "application/json", full),
        "health": response("200 OK", "application/json", b'{"status":"ok"}'),
        "models": response("200 OK", "application/json", models),
        "404": response("404 Not Found", "application/json", error.encode()),
        "400": response("400 Bad Request", "application/json", b'{"error":"bad request"}'),
    }


class StubProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining; requests need a Content-Length (or none)."""

    responses: ClassVar[dict[str, bytes]] = {}

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            method, target = lines[0].split(" ", 2)[:2]
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    close = value.strip().lower() == "close"
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            self.transport.write(self.answer(method, target, body))
            if close:
                self.transport.close()
                return

    def answer(self, method: str, target: str, body: bytes) -> bytes:
        r = self.responses
        if method == "POST" and target == "/v1/chat/completions":
            try:
                stream = bool(json.loads(body).get("stream"))
            except (ValueError, AttributeError):
                return r["400"]
            return r["sse"] if stream else r["json"]
        if method == "GET" and target == "/health":
            return r["health"]
        if method == "GET" and target == "/v1/models":
            return r["models"]
        return r["404"]


def stub_server(port: int) -> None:
    StubProtocol.responses = _stub_responses()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(StubProtocol, "127.0.0.1", port, backlog=512)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# --------------------------------------------------------------------------- the client

HEADERS = {"content-type": "application/json", "authorization": "Bearer unused"}


def request_body(stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": STUB_MODEL,
        "messages": [{"role": "user", "content": "Say hello."}],
        "stream": stream,
        "max_tokens": 16,
        "temperature": 0,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def check(response: httpx.Response) -> None:
    """The whole response was read and is the stub's answer (relayed or not)."""
    body = response.content
    if response.status_code != 200:
        raise RuntimeError(f"bad response {response.status_code}: {body[:300]!r}")
    if body.startswith(b"data:"):
        if not body.endswith(b"data: [DONE]\n\n"):
            raise RuntimeError(f"stream not finished: {body[-300:]!r}")
        if STUB_TEXT.encode() not in body or b'"usage":{' not in body:
            raise RuntimeError(f"stream lacks the stub's text or usage: {body[:500]!r}")
        return
    data = json.loads(body)
    if data["choices"][0]["message"]["content"] != STUB_TEXT or not data.get("usage"):
        raise RuntimeError(f"response lacks the stub's text or usage: {body[:500]!r}")


def sequential(client: httpx.Client, url: str, n: int, body: bytes) -> list[float]:
    """``n`` requests one after another; each one's latency in seconds."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.post(url, content=body, headers=HEADERS)
        t1 = time.perf_counter()
        check(response)
        out.append(t1 - t0)
    return out


async def concurrent(url: str, n: int, workers: int, body: bytes) -> float:
    """``n`` requests from ``workers`` concurrent clients; wall time in seconds."""
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        # open the connections before the clock starts
        await asyncio.gather(
            *(client.get(url.rsplit("/v1/", 1)[0] + "/health") for _ in range(workers))
        )
        left = n

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                check(await client.post(url, content=body, headers=HEADERS))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return time.perf_counter() - t0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = script.parser(__doc__, area="serving", quick="fewer requests")
    p.add_argument("--n", type=int, help="sequential requests per target (default 2000; quick 300)")
    p.add_argument("--block", type=int, default=100, help="requests per interleaved block")
    p.add_argument("--warmup", type=int, help="warm-up requests per target (default 200; quick 50)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    p.add_argument(
        "--concurrent-n",
        type=int,
        help="concurrent-phase requests per target (default 2000; quick 400)",
    )
    p.add_argument(
        "--concurrent-block",
        type=int,
        default=500,
        help="requests per interleaved concurrent block",
    )
    p.add_argument(
        "--gateway-log-level",
        default=None,
        help="log_level for the gateway (default: its own, info, with access log)",
    )
    p.add_argument(
        "--non-stream",
        action="store_true",
        help="clients ask for a plain JSON response (the gateway then asks the stub for one)",
    )
    p.add_argument("--stub-server", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.n = args.n or (300 if args.quick else 2000)
    args.warmup = args.warmup or (50 if args.quick else 200)
    args.concurrent_n = args.concurrent_n or (400 if args.quick else 2000)
    return args


def blocks(total: int, size: int) -> list[int]:
    return [min(size, total - i) for i in range(0, total, size)]


TARGETS = ("direct", "gateway", "metered")
LABELS = {
    "direct": "direct to stub",
    "gateway": "gateway, receipts off",
    "metered": "gateway, receipts on",
}


@dataclass(frozen=True)
class Measured:
    """Latencies (s) per target, server CPU (s) per gateway, concurrent wall time (s)."""

    latencies: dict[str, list[float]]
    cpu_s: dict[str, float]
    wall_s: dict[str, float]
    commands: dict[str, list[str]]


@contextlib.contextmanager
def servers(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[str, dict[str, Gateway]]]:
    """The stub, and two gateways in front of it (receipts off, on); the stub's URL."""
    stub_port = free_port()
    stub_cmd = [PYTHON, str(Path(__file__).resolve()), "--stub-server", "--port", str(stub_port)]
    stub_url = f"http://127.0.0.1:{stub_port}"
    model = {"name": STUB_MODEL, "base_url": stub_url + "/v1", "model_id": STUB_MODEL}
    with contextlib.ExitStack() as stack:
        stub = stack.enter_context(Child("stub", stub_cmd, log_path=tmp / "stub.log"))
        stub.wait_ready(stub_url + "/health")
        gateways = {}
        for name in ("gateway", "metered"):
            settings: dict[str, str | bool] = {
                "receipts": name == "metered",
                "data_dir": str(tmp / name),  # receipts of the run stay out of the user's data
            }
            if args.gateway_log_level:
                settings["log_level"] = args.gateway_log_level
            gateways[name] = stack.enter_context(
                running_gateway(
                    tmp, name=name, default_model=STUB_MODEL, settings=settings, models=[model]
                )
            )
        yield stub_url, gateways


def measure(args: argparse.Namespace, body: bytes) -> Measured:
    """Warm up, then the sequential and the concurrent blocks, rotating over the targets."""
    with scratch_dir() as tmp, servers(args, tmp) as (stub_url, gateways):
        urls = {"direct": stub_url + "/v1/chat/completions"}
        urls |= {n: g.base_url + "/chat/completions" for n, g in gateways.items()}
        lat: dict[str, list[float]] = {t: [] for t in TARGETS}
        cpu = dict.fromkeys(gateways, 0.0)
        with httpx.Client(timeout=60) as client:
            for t in TARGETS:
                sequential(client, urls[t], args.warmup, body)
            print(
                f"  warm; {args.n} sequential requests per target in blocks of {args.block}",
                flush=True,
            )
            for size in blocks(args.n, args.block):
                for t in TARGETS:
                    proc = gateways[t].child if t in gateways else None
                    before = proc.cpu_seconds() if proc else 0.0
                    lat[t] += sequential(client, urls[t], size, body)
                    if proc:
                        cpu[t] += proc.cpu_seconds() - before
        print(
            f"  {args.concurrent_n} requests per target from {args.concurrency} concurrent clients",
            flush=True,
        )
        wall = dict.fromkeys(TARGETS, 0.0)
        for size in blocks(args.concurrent_n, args.concurrent_block):
            for t in TARGETS:
                wall[t] += asyncio.run(concurrent(urls[t], size, args.concurrency, body))
        commands = {n: g.command for n, g in gateways.items()}
    return Measured(lat, cpu, wall, commands)


def figures(
    measured: Measured, concurrent_n: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, float]]:
    """Latency per target, latency added by each layer, requests/s, gateway CPU ms/request."""
    lat = measured.latencies
    stats = {
        t: summarize([x * 1000 for x in lat[t]], unit="ms", quantiles=(50, 90, 99), digits=4)
        for t in TARGETS
    }
    added = {
        "gateway": {q: stats["gateway"][q] - stats["direct"][q] for q in ("p50_ms", "p99_ms")},
        "metering": {q: stats["metered"][q] - stats["gateway"][q] for q in ("p50_ms", "p99_ms")},
    }
    rps = {
        t: {
            "sequential": len(lat[t]) / sum(lat[t]),
            "concurrent": concurrent_n / measured.wall_s[t],
        }
        for t in TARGETS
    }
    cpu_ms = {t: measured.cpu_s[t] / len(lat[t]) * 1000 for t in measured.cpu_s}
    return stats, added, rps, cpu_ms


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stub_server:
        stub_server(args.port)
        return 0
    run = script.start("overhead", "gateway and metering overhead over a stub upstream", args)
    measured = measure(args, request_body(stream=not args.non_stream))
    stats, added, rps, cpu_ms = figures(measured, args.concurrent_n)
    headers = [
        "path",
        "p50 ms",
        "p99 ms",
        "mean ms",
        "req/s sequential",
        f"req/s {args.concurrency} clients",
        "server CPU ms/req",
    ]
    rows = [
        [
            LABELS[t],
            fmt(stats[t]["p50_ms"], 3),
            fmt(stats[t]["p99_ms"], 3),
            fmt(stats[t]["mean_ms"], 3),
            fmt(rps[t]["sequential"], 0),
            fmt(rps[t]["concurrent"], 0),
            fmt(cpu_ms[t], 3) if t in cpu_ms else "",
        ]
        for t in TARGETS
    ]
    for key, label in (
        ("gateway", "added by the gateway (receipts off − direct)"),
        ("metering", "added by metering (receipts on − off)"),
    ):
        rows.append([label, fmt(added[key]["p50_ms"], 3), fmt(added[key]["p99_ms"], 3), *[""] * 4])
    gw_ok = added["gateway"]["p50_ms"] <= TARGET_P50_ADDED_MS
    meter_ok = added["metering"]["p50_ms"] <= TARGET_METERING_P50_MS
    verdicts = [
        f"gateway p50 added {added['gateway']['p50_ms']:.3f} ms: target <= "
        f"{TARGET_P50_ADDED_MS} ms {'met' if gw_ok else 'NOT met'}",
        f"metering p50 added {added['metering']['p50_ms']:.3f} ms: target <= "
        f"{TARGET_METERING_P50_MS} ms {'met' if meter_ok else 'NOT met'}",
    ]
    request = (
        "non-streaming chat completion"
        if args.non_stream
        else ("streaming chat completion with include_usage")
    )
    notes = [
        f"sequential: {args.n} requests per target after {args.warmup} warm-up, alternating "
        f"blocks of {args.block} across the three targets; concurrent: {args.concurrent_n} per "
        f"target from {args.concurrency} asyncio clients, blocks of {args.concurrent_block}",
        f"each request: {request}, whole response read (httpx, keep-alive)",
        "two gateway processes, identical but for `receipts` (metering, SQLite commit, "
        "Prometheus, receipt in the body); each with its own scratch data directory",
        f"gateway log level: {args.gateway_log_level or 'default (info, access log on)'}",
    ]
    result = {
        "parameters": {
            k: v for k, v in vars(args).items() if k not in ("stub_server", "port", "out")
        },
        "targets": {
            "gateway": f"p50 added latency <= {TARGET_P50_ADDED_MS} ms",
            "metering": f"p50 added latency <= {TARGET_METERING_P50_MS} ms",
        },
        "latency": stats,
        "added_ms": added,
        "meets_target": {"gateway": gw_ok, "metering": meter_ok},
        "requests_per_s": rps,
        "server_cpu_ms_per_request": cpu_ms,
        "gateway_commands": measured.commands,
    }
    run.finish(
        result,
        headers=headers,
        rows=rows,
        notes=notes,
        verdicts=verdicts,
        title="Gateway and metering overhead over a stub upstream",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
