"""Fallback cost: how much latency does a dead first choice add before its fallback answers?

A loopback stub upstream answers at once (``stub``). A second remote model, ``dead``, points
at a closed port on 127.0.0.1 and lists ``stub`` as its fallback. For each configuration
below, one ``smallfirst serve`` child gets ``--rounds`` interleaved pairs of the same
request: one to ``stub`` directly, one to ``dead`` (answered by ``stub`` after the refused
connection). The added latency is the ``dead`` request's minus its pair's ``stub``
request's, reported as p50, p99 and mean (the mean is what a client pays on average).

Configurations:

* **defaults**: the gateway's retries (``remote_retries``, backoff) and cooldown: the first
  failures are retried with backoff before falling back; after ``cooldown_failures`` the dead
  model is skipped for ``cooldown_s``, then probed again (one request in a while pays
  the retries once more).
* **no retries**: ``remote_retries = 0``, cooldown as default.
* **every time**: ``remote_retries = 0`` and ``cooldown_s = 0``: every request tries the
  closed port first; the bare cost of one refused connection and the switch.

Bodies and streams alternate; latency is to the end of the answer. Requests are sent one
at a time.

    .venv/bin/python bench/fallback_cost.py [--quick] [--rounds 200]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from harness import script
from harness.gateway import ConfigValue, running_gateway
from harness.load import send
from harness.procs import scratch_dir
from harness.stats import fmt, summarize
from smallfirst.stub_upstream import StubUpstream
from smallfirst.testing import free_port

HEADERS = ["config", "pairs", "failed", "direct p50 ms", "added p50 ms", "added p99 ms",
           "added mean ms", "added max ms"]  # fmt: skip
CONFIGS: dict[str, dict[str, int | float]] = {
    "defaults": {},
    "no retries": {"remote_retries": 0},
    "every time": {"remote_retries": 0, "cooldown_s": 0},
}


def run_config(name: str, extra: dict[str, int | float], stub: StubUpstream, tmp: Path,
               rounds: int) -> dict[str, Any]:  # fmt: skip
    settings: dict[str, str | int | float | bool] = {
        "data_dir": str(tmp / name.replace(" ", "-")),
        "default_model": "stub",
        "default_router": False,
        **extra,
    }
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    models: list[dict[str, ConfigValue]] = [
        {"name": "stub", "base_url": stub.url, "model_id": "stub"},
        {"name": "dead", "base_url": closed, "model_id": "stub", "fallbacks": ["stub"]},
    ]
    added_ms: list[float] = []
    direct_ms: list[float] = []
    failures = 0
    slug = name.replace(" ", "-")
    gateway = running_gateway(tmp, name=slug, settings=settings, models=models)
    with gateway as gw, httpx.Client(base_url=gw.url, timeout=60) as http:
        send(http, "stub")  # warm the connection pools
        for i in range(rounds):
            stream = i % 2 == 1
            a = send(http, "stub", stream=stream)
            b = send(http, "dead", stream=stream)
            if a.status != 200 or b.status != 200 or not b.receipt_id:
                failures += 1
                continue
            direct_ms.append(a.latency_s * 1000)
            added_ms.append((b.latency_s - a.latency_s) * 1000)
    return {
        "config": name,
        "settings": extra,
        "pairs": len(added_ms),
        "failures": failures,
        "direct_ms": summarize(direct_ms, unit="ms", digits=2),
        "added_ms": summarize(added_ms, unit="ms", digits=2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = script.parser(__doc__, area="resilience", quick="30 pairs per configuration")
    p.add_argument("--rounds", type=int, default=200, help="pairs per configuration")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = 30
    run = script.start("fallback_cost", "fallback cost: a closed port before the answer", args)
    results = []
    with scratch_dir() as tmp, StubUpstream() as stub:
        for name, extra in CONFIGS.items():
            t0 = time.monotonic()
            results.append(run_config(name, extra, stub, tmp, args.rounds))
            print(f"  {name}: {time.monotonic() - t0:.0f} s", flush=True)
    rows = [
        [r["config"], str(r["pairs"]), str(r["failures"]), fmt(r["direct_ms"]["p50_ms"]),
         fmt(r["added_ms"]["p50_ms"]), fmt(r["added_ms"]["p99_ms"]),
         fmt(r["added_ms"]["mean_ms"]), fmt(r["added_ms"]["max_ms"])]
        for r in results
    ]  # fmt: skip
    failures = sum(r["failures"] for r in results)
    verdicts = [
        f"{'PASS' if failures == 0 else 'FAIL'}: {failures} requests to the dead model not "
        "answered by its fallback"
    ]
    run.finish(
        {"settings": vars(args) | {"out": str(args.out)}, "configs": results},
        headers=HEADERS,
        rows=rows,
        verdicts=verdicts,
    )
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
