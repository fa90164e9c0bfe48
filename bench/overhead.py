"""What the gateway adds per request, measured against a stub upstream that costs ~nothing.

A stub OpenAI-compatible server (this script with ``--stub-server``: a bare asyncio HTTP/1.1
server with keep-alive and canned bytes) answers ``POST /v1/chat/completions``: a JSON body,
or, when the request says ``"stream": true``, an SSE stream of a role chunk, one content
chunk, a finish chunk, a usage chunk and ``[DONE]``. ``smallfirst serve`` runs in its own
process with the stub declared as a remote model; its remote engine asks the stub for a
stream when its own client streams, and for one JSON body otherwise.

From this process an ``httpx`` client (keep-alive) sends the same streaming chat request
(``stream_options.include_usage``; ``--non-stream``: a plain one) either straight to the
stub or through the gateway and reads the whole response. After a warm-up, blocks of
``--block`` sequential requests alternate between the two targets until each has had
``--n``; latency p50/p99 of each, the added latency (gateway minus direct, at p50 and at
p99), and requests/s through the gateway, sequential and with ``--concurrency`` concurrent
clients (asyncio, one connection each; again alternating blocks with the direct path).
Target: p50 added <= 2 ms.

    .venv/bin/python bench/overhead.py [--quick] [--n 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx

import _common as c

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


def summarize(latencies: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in latencies]
    return {
        "n": len(ms),
        "p50_ms": round(c.percentile(ms, 50), 4),
        "p90_ms": round(c.percentile(ms, 90), 4),
        "p99_ms": round(c.percentile(ms, 99), 4),
        "mean_ms": round(sum(ms) / len(ms), 4),
        "min_ms": round(min(ms), 4),
        "max_ms": round(max(ms), 4),
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
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
    p.add_argument("--quick", action="store_true", help="fewer requests")
    p.add_argument("--out", type=Path, default=c.RESULTS_DIR, help="results folder")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stub_server:
        stub_server(args.port)
        return 0
    body = request_body(stream=not args.non_stream)
    c.install_signal_handlers()
    machine = c.machine_info()
    c.print_header("gateway and metering overhead over a stub upstream", machine)
    with c.scratch_dir() as tmp:
        stub_port = c.free_port()
        stub_cmd = [
            c.PYTHON,
            str(Path(__file__).resolve()),
            "--stub-server",
            "--port",
            str(stub_port),
        ]
        model = {
            "name": STUB_MODEL,
            "base_url": f"http://127.0.0.1:{stub_port}/v1",
            "model_id": STUB_MODEL,
        }
        ports = {"gateway": c.free_port(), "metered": c.free_port()}
        commands = {}
        for name, port in ports.items():
            settings: dict[str, Any] = {
                "receipts": name == "metered",
                "data_dir": str(tmp / name),  # receipts of the run stay out of the user's data
            }
            if args.gateway_log_level:
                settings["log_level"] = args.gateway_log_level
            config = c.write_gateway_config(tmp / f"{name}.toml", settings, [model])
            commands[name] = c.gateway_command(port=port, default_model=STUB_MODEL, config=config)
        urls = {"direct": f"http://127.0.0.1:{stub_port}/v1/chat/completions"}
        urls.update({n: f"http://127.0.0.1:{p}/v1/chat/completions" for n, p in ports.items()})
        with (
            c.Child("stub", stub_cmd, log_path=tmp / "stub.log") as stub,
            c.Child("gateway", commands["gateway"], log_path=tmp / "gateway.log") as gw,
            c.Child("metered", commands["metered"], log_path=tmp / "metered.log") as metered,
        ):
            stub.wait_ready(f"http://127.0.0.1:{stub_port}/health")
            procs = {"gateway": gw, "metered": metered}
            for name, port in ports.items():
                procs[name].wait_ready(f"http://127.0.0.1:{port}/health")
            lat: dict[str, list[float]] = {t: [] for t in TARGETS}
            cpu = {"gateway": 0.0, "metered": 0.0}
            with httpx.Client(timeout=60) as client:
                for t in TARGETS:
                    sequential(client, urls[t], args.warmup, body)
                print(
                    f"  warm; {args.n} sequential requests per target in blocks of {args.block}",
                    flush=True,
                )
                for size in blocks(args.n, args.block):
                    for t in TARGETS:
                        before = procs[t].cpu_seconds() if t in procs else 0.0
                        lat[t] += sequential(client, urls[t], size, body)
                        if t in procs:
                            cpu[t] += procs[t].cpu_seconds() - before
            print(
                f"  {args.concurrent_n} requests per target from {args.concurrency} "
                "concurrent clients",
                flush=True,
            )
            wall = dict.fromkeys(TARGETS, 0.0)
            for size in blocks(args.concurrent_n, args.concurrent_block):
                for t in TARGETS:
                    wall[t] += asyncio.run(concurrent(urls[t], size, args.concurrency, body))
    stats = {t: summarize(lat[t]) for t in TARGETS}
    added = {
        "gateway": {q: stats["gateway"][q] - stats["direct"][q] for q in ("p50_ms", "p99_ms")},
        "metering": {q: stats["metered"][q] - stats["gateway"][q] for q in ("p50_ms", "p99_ms")},
    }
    rps = {
        t: {"sequential": len(lat[t]) / sum(lat[t]), "concurrent": args.concurrent_n / wall[t]}
        for t in TARGETS
    }
    cpu_ms = {t: cpu[t] / len(lat[t]) * 1000 for t in cpu}
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
            c.fmt(stats[t]["p50_ms"], 3),
            c.fmt(stats[t]["p99_ms"], 3),
            c.fmt(stats[t]["mean_ms"], 3),
            c.fmt(rps[t]["sequential"], 0),
            c.fmt(rps[t]["concurrent"], 0),
            c.fmt(cpu_ms[t], 3) if t in cpu_ms else "",
        ]
        for t in TARGETS
    ]
    rows.append(
        [
            "added by the gateway (receipts off − direct)",
            c.fmt(added["gateway"]["p50_ms"], 3),
            c.fmt(added["gateway"]["p99_ms"], 3),
            "",
            "",
            "",
            "",
        ]
    )
    rows.append(
        [
            "added by metering (receipts on − off)",
            c.fmt(added["metering"]["p50_ms"], 3),
            c.fmt(added["metering"]["p99_ms"], 3),
            "",
            "",
            "",
            "",
        ]
    )
    gw_ok = added["gateway"]["p50_ms"] <= TARGET_P50_ADDED_MS
    meter_ok = added["metering"]["p50_ms"] <= TARGET_METERING_P50_MS
    print()
    print(c.text_table(headers, rows))
    verdicts = [
        f"gateway p50 added {added['gateway']['p50_ms']:.3f} ms: target <= "
        f"{TARGET_P50_ADDED_MS} ms {'met' if gw_ok else 'NOT met'}",
        f"metering p50 added {added['metering']['p50_ms']:.3f} ms: target <= "
        f"{TARGET_METERING_P50_MS} ms {'met' if meter_ok else 'NOT met'}",
    ]
    print("\n  " + "\n  ".join(verdicts))
    notes = [
        *verdicts,
        f"sequential: {args.n} requests per target after {args.warmup} warm-up, alternating "
        f"blocks of {args.block} across the three targets; concurrent: {args.concurrent_n} per "
        f"target from {args.concurrency} asyncio clients, blocks of {args.concurrent_block}",
        "each request: "
        + (
            "non-streaming chat completion"
            if args.non_stream
            else "streaming chat completion with include_usage"
        )
        + ", whole response read (httpx, keep-alive)",
        "two gateway processes, identical but for `receipts` (metering, SQLite commit, "
        "Prometheus, receipt in the body); each with its own scratch data directory",
        f"gateway log level: {args.gateway_log_level or 'default (info, access log on)'}",
    ]
    result = {
        "benchmark": "overhead",
        "machine": machine,
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
        "gateway_commands": commands,
    }
    paths = c.write_results(
        "overhead",
        result,
        title="Gateway and metering overhead over a stub upstream",
        headers=headers,
        rows=rows,
        notes=notes,
        quick=args.quick,
        out_dir=args.out,
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
