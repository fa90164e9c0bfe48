"""What a response-cache hit costs in latency, against the stub upstream answered directly.

The stub upstream of ``overhead.py`` (a bare asyncio HTTP/1.1 server with canned bytes, as
a subprocess) answers ``POST /v1/chat/completions`` at once. Two ``smallfirst serve``
processes sit in front of it, both with receipts on, identical but for ``response_cache``:

* **miss path** (cache off): every request goes to the stub through the remote engine;
* **hit** (cache on): after the warm-up's first request, every request is a hit, answered
  from memory with its receipt stored; every response is checked for
  ``x-smallfirst-cache: hit`` and the stub's text.

From this process a keep-alive ``httpx`` client sends the same greedy request (streaming
with ``include_usage``, and with ``--non-stream`` a plain body) in blocks of ``--block``
rotating over the three targets (direct, miss path, hit) until each has had ``--n``. It
reports p50/p99 of each, the latency a hit adds over the stub answered directly (the
issue's target: p50 <= 2 ms), the hit's latency as a share of the miss path's, and each
gateway process's CPU per request (which a busy machine inflates far less than latency).

    .venv/bin/python bench/cache_latency.py [--quick] [--n 2000] [--non-stream]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from harness import PYTHON, script
from harness.gateway import Gateway, running_gateway
from harness.procs import Child, scratch_dir
from harness.stats import fmt, summarize
from overhead import HEADERS, STUB_MODEL, STUB_TEXT, blocks, check, request_body
from smallfirst.testing import free_port

TARGET_P50_ADDED_MS = 2.0  # issue 14: a hit adds at most 2 ms at p50 over the stub direct
TARGETS = ("direct", "miss", "hit")
LABELS = {
    "direct": "direct to stub",
    "miss": "gateway, cache off (to the stub)",
    "hit": "gateway, cache hit",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = script.parser(__doc__, area="serving", quick="fewer requests")
    p.add_argument("--n", type=int, help="requests per target (default 2000; quick 300)")
    p.add_argument("--block", type=int, default=100, help="requests per interleaved block")
    p.add_argument("--warmup", type=int, help="warm-up requests per target (default 200; quick 50)")
    p.add_argument("--non-stream", action="store_true", help="plain JSON bodies, not SSE")
    args = p.parse_args(argv)
    args.n = args.n or (300 if args.quick else 2000)
    args.warmup = args.warmup or (50 if args.quick else 200)
    return args


@contextlib.contextmanager
def servers(tmp: Path) -> Iterator[tuple[str, dict[str, Gateway]]]:
    """The stub and the two gateways in front of it; the stub's URL."""
    port = free_port()
    overhead = Path(__file__).resolve().with_name("overhead.py")
    cmd = [PYTHON, str(overhead), "--stub-server", "--port", str(port)]
    stub_url = f"http://127.0.0.1:{port}"
    model = {"name": STUB_MODEL, "base_url": stub_url + "/v1", "model_id": STUB_MODEL}
    with contextlib.ExitStack() as stack:
        stub = stack.enter_context(Child("stub", cmd, log_path=tmp / "stub.log"))
        stub.wait_ready(stub_url + "/health")
        gateways = {}
        for name in ("miss", "hit"):
            settings: dict[str, str | bool] = {
                "response_cache": name == "hit",
                "data_dir": str(tmp / name),
                "log_level": "warning",  # no access log line per request on either side
            }
            gateways[name] = stack.enter_context(
                running_gateway(
                    tmp, name=name, default_model=STUB_MODEL, settings=settings, models=[model]
                )
            )
        yield stub_url, gateways


def check_text(response: httpx.Response) -> None:
    """A hit's answer is the stub's, whole: a body, or word-sized chunks and a usage chunk."""
    body = response.content
    if response.status_code != 200:
        raise RuntimeError(f"bad response {response.status_code}: {body[:300]!r}")
    if not body.startswith(b"data:"):
        check(response)
        return
    events = [json.loads(e[6:]) for e in body.split(b"\n\n") if e.startswith(b"data: {")]
    text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    if text != STUB_TEXT or not events[-1].get("usage") or not body.endswith(b"[DONE]\n\n"):
        raise RuntimeError(f"not the stub's answer: {body[:500]!r}")


def timed(client: httpx.Client, url: str, n: int, body: bytes, expect: str | None) -> list[float]:
    """``n`` sequential requests; each one's latency (s). ``expect``: the cache header."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.post(url, content=body, headers=HEADERS)
        t1 = time.perf_counter()
        check_text(response) if expect == "hit" else check(response)
        if expect is not None and response.headers.get("x-smallfirst-cache") != expect:
            raise RuntimeError(f"expected a cache {expect}: {response.headers}")
        out.append(t1 - t0)
    return out


def measure(
    args: argparse.Namespace, body: bytes
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Latencies (s) per target, and each gateway process's CPU seconds over the blocks."""
    expect = {"direct": None, "miss": None, "hit": "hit"}  # the cache-off gateway sends none
    with scratch_dir() as tmp, servers(tmp) as (stub_url, gateways):
        urls = {"direct": stub_url + "/v1/chat/completions"}
        urls |= {n: g.base_url + "/chat/completions" for n, g in gateways.items()}
        lat: dict[str, list[float]] = {t: [] for t in TARGETS}
        cpu = dict.fromkeys(gateways, 0.0)
        with httpx.Client(timeout=60) as client:
            timed(client, urls["hit"], 1, body, None)  # the miss that fills the cache
            for t in TARGETS:
                timed(client, urls[t], args.warmup, body, expect[t])
            print(f"  warm; {args.n} requests per target in blocks of {args.block}", flush=True)
            for size in blocks(args.n, args.block):
                for t in TARGETS:
                    proc = gateways[t].child if t in gateways else None
                    before = proc.cpu_seconds() if proc else 0.0
                    lat[t] += timed(client, urls[t], size, body, expect[t])
                    if proc:
                        cpu[t] += proc.cpu_seconds() - before
    return lat, cpu


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run = script.start("cache_latency", "response cache hit latency over a stub upstream", args)
    lat, cpu = measure(args, request_body(stream=not args.non_stream))
    # CPU per request barely depends on how busy the machine is, latency does: on a quiet
    # machine a request's latency is close to its server CPU (overhead.py, 2026-11-29)
    cpu_ms = {t: cpu[t] / len(lat[t]) * 1000 for t in cpu}
    stats = {
        t: summarize([x * 1000 for x in lat[t]], unit="ms", quantiles=(50, 90, 99), digits=4)
        for t in TARGETS
    }
    added = {q: stats["hit"][q] - stats["direct"][q] for q in ("p50_ms", "p99_ms")}
    share = stats["hit"]["p50_ms"] / stats["miss"]["p50_ms"]
    ok = added["p50_ms"] <= TARGET_P50_ADDED_MS
    headers = ["path", "p50 ms", "p99 ms", "mean ms", "req/s sequential", "server CPU ms/req"]
    rows: list[list[Any]] = [
        [
            LABELS[t],
            fmt(stats[t]["p50_ms"], 3),
            fmt(stats[t]["p99_ms"], 3),
            fmt(stats[t]["mean_ms"], 3),
            fmt(len(lat[t]) / sum(lat[t]), 0),
            fmt(cpu_ms[t], 3) if t in cpu_ms else "",
        ]
        for t in TARGETS
    ]
    rows.append(
        [
            "added by a hit (hit − direct)",
            fmt(added["p50_ms"], 3),
            fmt(added["p99_ms"], 3),
            *[""] * 3,
        ]
    )
    verdicts = [
        f"hit p50 added {added['p50_ms']:.3f} ms over the stub direct: target <= "
        f"{TARGET_P50_ADDED_MS} ms {'met' if ok else 'NOT met'}",
        f"a hit takes {share:.2f} of the cache-off gateway's p50 and "
        f"{cpu_ms['hit'] / cpu_ms['miss']:.2f} of its server CPU per request "
        f"({cpu_ms['hit']:.3f} against {cpu_ms['miss']:.3f} ms)",
    ]
    kind = "non-streaming" if args.non_stream else "streaming (include_usage)"
    notes = [
        f"{args.n} requests per target after {args.warmup} warm-up, alternating blocks of "
        f"{args.block}; each a {kind} greedy chat completion, whole response read (httpx, "
        "keep-alive)",
        "two gateway processes with receipts on (a hit's receipt is stored too), identical "
        "but for response_cache; log level warning on both",
    ]
    result = {
        "parameters": {k: v for k, v in vars(args).items() if k != "out"},
        "target": f"hit p50 added latency over the stub direct <= {TARGET_P50_ADDED_MS} ms",
        "latency": stats,
        "hit_added_ms": added,
        "hit_share_of_miss_path_p50": share,
        "server_cpu_ms_per_request": cpu_ms,
        "meets_target": ok,
    }
    run.finish(
        result,
        headers=headers,
        rows=rows,
        notes=notes,
        verdicts=verdicts,
        title="Response cache: latency of a hit over a stub upstream",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
