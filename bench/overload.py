"""Overload: at 4x the rate a model can sustain, are the refusals fast and the rest served?

One ``smallfirst serve`` child with SmolLM2-135M in-process (one generation at a time behind
a queue of ``max_queue`` waiting requests, the gateway's defaults unless told), or with
``--target stub`` a loopback stub upstream that answers in ``--stub-delay-ms`` through
``--stub-in-flight`` slots (the same admission, without a model's CPU, so that a shared
machine disturbs it less), and three phases:

1. **unloaded**: ``--unloaded-n`` requests one after another. Their latency is the unloaded
   figure, and requests per second one after another is the sustainable rate R.
2. **overload**: requests arrive open-loop (Poisson, so bursts happen) at ``--factor`` x R
   (default 4) for ``--overload-s`` (default 120), each on its own worker, whatever the
   gateway is doing. A 429 ``server_overloaded`` for a full queue should come back at once
   (within ``--fast-ms``, default 50 ms); one for a request that waited in the queue comes
   at ``queue_timeout_s``, by design. Every refusal should carry ``Retry-After``.
3. **recovery**: the time from the last overload request sent until every admitted request
   has its answer (the backlog is gone), then one more request, whose latency is compared
   with the unloaded figure.

Every request is the same short greedy chat completion (``--max-tokens``, default 16) with a
body (no stream), so latencies compare like for like.

    .venv/bin/python bench/overload.py [--quick] [--factor 4] [--overload-s 120]
"""

from __future__ import annotations

import contextlib
import random
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from harness import script
from harness.gateway import ConfigValue, load_model, running_gateway
from harness.load import Outcome, send
from harness.procs import scratch_dir
from harness.stats import fmt, summarize
from smallfirst.settings import Settings
from smallfirst.stub_upstream import StubUpstream

SMOL = "smollm2-135m-instruct"
STUB = "stub"
RECOVERY_GIVE_UP_S = 600.0


def _unloaded(http: httpx.Client, args: Any) -> tuple[list[Outcome], float]:
    t0 = time.monotonic()
    out = [send(http, args.model, max_tokens=args.max_tokens) for _ in range(args.unloaded_n)]
    return out, len(out) / (time.monotonic() - t0)


def _overload(
    url: str, rate_per_s: float, args: Any, pool: ThreadPoolExecutor
) -> tuple[list[Outcome], int, float]:
    """Open-loop Poisson arrivals at ``rate_per_s`` on ``pool``: the outcomes (filled in as
    they finish), how many were sent, and when sending stopped."""
    rng = random.Random(args.seed)
    out: list[Outcome] = []
    submitted = 0
    lock = threading.Lock()
    local = threading.local()

    def one() -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=url, timeout=args.queue_timeout_s + 60)
        o = send(local.http, args.model, max_tokens=args.max_tokens)
        with lock:
            out.append(o)

    t0 = time.monotonic()
    end = t0 + args.overload_s
    next_at = t0
    while next_at < end:
        time.sleep(max(0.0, next_at - time.monotonic()))
        pool.submit(one)
        submitted += 1
        next_at += rng.expovariate(rate_per_s)
    return out, submitted, time.monotonic()


def _recovery(
    http: httpx.Client, model: str, since: float, submitted: int, done: list[Outcome]
) -> tuple[float, Outcome]:
    """Seconds from ``since`` until every overload request has its answer (the backlog is
    gone), and a probe sent right then."""
    while len(done) < submitted and time.monotonic() - since < RECOVERY_GIVE_UP_S:
        time.sleep(0.05)
    drained_s = time.monotonic() - since
    return drained_s, send(http, model, max_tokens=16)


def run_overload(args: Any, tmp: Path) -> dict[str, Any]:
    settings: dict[str, str | int | float | bool] = {
        "data_dir": str(tmp / "data"),
        "models_dir": str(Settings().models_path),
        "default_model": SMOL,
        "default_router": False,
        "max_queue": args.max_queue,
        "queue_timeout_s": args.queue_timeout_s,
    }
    models: list[dict[str, ConfigValue]] = []
    with contextlib.ExitStack() as stack:
        if args.target == "stub":
            stub = stack.enter_context(StubUpstream(delay_s=args.stub_delay_ms / 1000))
            models.append({"name": STUB, "base_url": stub.url, "model_id": "stub"})
            settings["remote_max_in_flight"] = args.stub_in_flight
        args.model = STUB if args.target == "stub" else SMOL
        gateway = running_gateway(tmp, name="overload", settings=settings, models=models)
        gw = stack.enter_context(gateway)
        http = stack.enter_context(httpx.Client(base_url=gw.url, timeout=args.queue_timeout_s + 60))
        load_model(http, args.model)
        base, rate = _unloaded(http, args)
        print(f"  unloaded: {rate:.2f} requests/s one after another", flush=True)
        offered = args.factor * rate
        print(f"  overload: {offered:.1f} requests/s for {args.overload_s:.0f} s", flush=True)
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            loaded, submitted, sent_until = _overload(gw.url, offered, args, pool)
            recovery_s, probe = _recovery(http, args.model, sent_until, submitted, loaded)
    return _summary(args, base, rate, offered, loaded, recovery_s, probe)


def _summary(
    args: Any, base: list[Outcome], rate: float, offered: float, loaded: list[Outcome],
    recovery_s: float, probe: Outcome,
) -> dict[str, Any]:  # fmt: skip
    ms = 1000.0
    refused = [o for o in loaded if o.overloaded]
    admitted = [o for o in loaded if o.status == 200]
    other = [o for o in loaded if o.status != 200 and not o.overloaded]
    fast = [o for o in refused if o.latency_s * ms <= args.fast_ms]
    # a request admitted to the queue that waits out queue_timeout_s is refused then, by design
    timed_out = [o for o in refused if o.latency_s >= args.queue_timeout_s]
    unloaded = summarize([o.latency_s * ms for o in base], unit="ms", digits=1)
    served = summarize([o.latency_s * ms for o in admitted], unit="ms", digits=1)
    return {
        "sustainable_rps": round(rate, 3),
        "offered_rps": round(offered, 3),
        "requests": len(loaded),
        "admitted": len(admitted),
        "admitted_rps": round(len(admitted) / args.overload_s, 3),
        "refused_429": len(refused),
        "refused_fast": len(fast),
        "refused_at_queue_timeout": len(timed_out),
        "refused_with_retry_after": sum(1 for o in refused if o.retry_after),
        "refused_ms": summarize([o.latency_s * ms for o in refused], unit="ms", digits=1),
        "other_errors": len(other),
        "other_codes": sorted({f"{o.status} {o.code}" for o in other}),
        "unloaded_ms": unloaded,
        "admitted_ms": served,
        "admitted_p50_vs_unloaded": round(served["p50_ms"] / unloaded["p50_ms"], 2),
        "recovery_s": round(recovery_s, 2),
        "probe_after_recovery": {"status": probe.status, "ms": round(probe.latency_s * ms, 1)},
    }


def _rows(r: dict[str, Any]) -> list[list[str]]:
    def share(n: int) -> str:
        return f"{100 * n / r['requests']:.1f}%" if r["requests"] else "-"

    fast = r["refused_fast"] / r["refused_429"] if r["refused_429"] else float("nan")
    return [
        ["sustainable rate (one at a time)", f"{r['sustainable_rps']:.2f} req/s"],
        ["offered rate", f"{r['offered_rps']:.2f} req/s"],
        ["requests sent", f"{r['requests']:,}"],
        ["admitted and answered", f"{r['admitted']:,} ({share(r['admitted'])})"],
        ["refused 429 server_overloaded", f"{r['refused_429']:,} ({share(r['refused_429'])})"],
        ["  of which fast (queue full)", f"{100 * fast:.1f}%"],
        ["  of which after queue_timeout_s", f"{r['refused_at_queue_timeout']:,}"],
        ["  with Retry-After", f"{r['refused_with_retry_after']:,}"],
        ["  refusal p50 / p99", f"{fmt(r['refused_ms'].get('p50_ms'), 1)} / "
                                f"{fmt(r['refused_ms'].get('p99_ms'), 1)} ms"],
        ["other errors", f"{r['other_errors']} {' '.join(r['other_codes'])}"],
        ["unloaded latency p50 / p99", f"{fmt(r['unloaded_ms']['p50_ms'], 1)} / "
                                       f"{fmt(r['unloaded_ms']['p99_ms'], 1)} ms"],
        ["admitted latency p50 / p99", f"{fmt(r['admitted_ms'].get('p50_ms'), 1)} / "
                                       f"{fmt(r['admitted_ms'].get('p99_ms'), 1)} ms"],
        ["admitted p50 / unloaded p50", f"{r['admitted_p50_vs_unloaded']:.2f}x"],
        ["backlog drained after the overload", f"{r['recovery_s']:.2f} s"],
        ["then one request", f"{r['probe_after_recovery']['status']} in "
                             f"{r['probe_after_recovery']['ms']:.1f} ms"],
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = script.parser(__doc__, area="resilience", quick="20 s of overload")
    p.add_argument(
        "--target",
        choices=("smollm2", "stub"),
        default="smollm2",
        help="the model overloaded: SmolLM2 in-process, or a stub upstream answering in "
        "--stub-delay-ms with --stub-in-flight slots (the admission alone, no model's CPU)",
    )
    p.add_argument("--stub-delay-ms", type=float, default=100.0)
    p.add_argument("--stub-in-flight", type=int, default=1)
    p.add_argument("--factor", type=float, default=4.0)
    p.add_argument("--overload-s", type=float, default=120.0)
    p.add_argument("--unloaded-n", type=int, default=30)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--fast-ms", type=float, default=50.0)
    p.add_argument("--workers", type=int, default=128, help="client threads for the overload")
    defaults = Settings()
    p.add_argument("--max-queue", type=int, default=defaults.max_queue)
    p.add_argument("--queue-timeout-s", type=float, default=defaults.queue_timeout_s)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.overload_s, args.unloaded_n = 20.0, 10
    title = f"overload: {args.factor:g}x the sustainable rate of {args.target}"
    run = script.start(f"overload-{args.target}", title, args)
    with scratch_dir() as tmp:
        res = run_overload(args, tmp)
    fast_share = res["refused_fast"] / res["refused_429"] if res["refused_429"] else 0.0
    slow = res["refused_429"] - res["refused_fast"] - res["refused_at_queue_timeout"]
    verdicts = [
        f"{'PASS' if res['other_errors'] == 0 else 'FAIL'}: {res['other_errors']} errors "
        "other than 429 server_overloaded",
        f"{'PASS' if slow == 0 else 'FAIL'}: every refusal at once (<= {args.fast_ms:g} ms: "
        f"{100 * fast_share:.1f}%) or at the queue timeout; {slow} in between",
        f"{'PASS' if res['refused_with_retry_after'] == res['refused_429'] else 'FAIL'}: every "
        "refusal carries Retry-After",
    ]
    run.finish(
        {"settings": vars(args) | {"out": str(args.out)}, **res},
        headers=["figure", "value"],
        rows=_rows(res),
        verdicts=verdicts,
    )
    return 0 if all(v.startswith("PASS") for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
