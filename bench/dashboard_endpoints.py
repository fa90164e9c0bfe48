"""How fast the dashboard's data endpoints answer with 100,000 stored receipts.

A scratch data directory gets ``--receipts`` receipts (default 100,000) spread over the last
``--days`` days in time order, as a gateway would have written them (several models and
tiers, estimated, measured and profile energy, some with a route policy), and a finished
evaluation run (4 models × 5 benchmarks × 200 items, with model outputs). ``smallfirst
serve`` then runs in its own process on that data directory, with the models directory
pointing at the real one (``models_dir`` in its config file; no model is loaded), and an
``httpx`` client (keep-alive) times ``--n`` sequential requests to each endpoint the page
uses, for each period the page offers (last hour, last day, all), after a warm-up: p50,
p95 and max.
Target: p95 under 200 ms for every endpoint. Also timed: a whole page refresh (its four
requests sent at once, as the page does) and the frontier when its cache misses.

    .venv/bin/python bench/dashboard_endpoints.py [--quick] [--receipts 100000] [--n 50]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from harness import script
from harness.gateway import running_gateway
from harness.procs import scratch_dir
from harness.stats import fmt, summarize

TARGET_P95_MS = 200.0
# (model, tier, engine, energy method, J per token): what a mixed deployment stores
MODELS = [
    ("smollm2-135m-instruct", "XS", "llama.cpp", "estimated", 0.02),
    ("qwen2.5-coder-0.5b-instruct", "S", "llama.cpp", "estimated", 0.06),
    ("qwen2.5-coder-1.5b-instruct", "M", "llama.cpp", "measured", 0.18),
    ("gpt-4o", "remote", "remote", "profile", 0.9),
]
BENCHMARKS = ("humaneval", "mbpp", "gsm8k", "mmlu", "arc-challenge")
PERIODS = {"1h": "1h", "1d": "1d", "all": None}


def plausible_receipt(rng: random.Random, i: int, created_at: float) -> Any:
    """One plausible receipt of a mixed deployment."""
    from smallfirst.metering.receipts import Receipt

    model, tier, engine, method, j_per_token = rng.choice(MODELS)
    prompt, completion = rng.randint(10, 800), rng.randint(1, 400)
    energy = j_per_token * (prompt + completion) * rng.uniform(0.7, 1.3)
    base = 0.18 * (prompt + completion)
    return Receipt(
        id=f"bench-{i}",
        created_at=created_at,
        endpoint="chat",
        model=model,
        tier=tier,
        engine=engine,
        stream=rng.random() < 0.5,
        status="ok",
        prompt_tokens=prompt,
        completion_tokens=completion,
        duration_s=rng.uniform(0.2, 8.0),
        ttft_s=rng.uniform(0.02, 0.5),
        energy_j=energy,
        energy_method=method,
        energy_scope="process",
        energy_source="bench seed",
        energy_note=None,
        cpu_s=rng.uniform(0.1, 6.0),
        cost_usd=energy / 3.6e6 * 0.15,
        cost_method="energy × PUE × $0.15/kWh",
        co2_g=energy / 3.6e6 * 475,
        grid_g_per_kwh=475.0,
        pue=1.0,
        carbon_source="world average",
        baseline_model="qwen2.5-coder-1.5b-instruct",
        baseline_energy_j=base,
        baseline_cost_usd=base / 3.6e6 * 0.15,
        baseline_co2_g=base / 3.6e6 * 475,
        baseline_source="estimated profile",
        saved_energy_j=base - energy,
        saved_cost_usd=(base - energy) / 3.6e6 * 0.15,
        saved_co2_g=(base - energy) / 3.6e6 * 475,
        policy="auto:balanced" if rng.random() < 0.3 else None,
    )


def _seed_evals(db: Path, rng: random.Random, eval_items: int, now: float) -> int:
    """One finished evaluation run, every model on every benchmark; the results written."""
    from smallfirst.store.eval_results import EvalResult, EvalStore

    evals = EvalStore(db)
    evals.start_run("bench", {"seeded": True})
    count = 0
    for model, _, _, method, j_per_token in MODELS:
        for benchmark in BENCHMARKS:
            for item in range(eval_items):
                evals.add(
                    EvalResult(
                        run_id="bench",
                        benchmark=benchmark,
                        item_id=str(item),
                        model=model,
                        subject=None,
                        prompt_hash="0" * 16,
                        correct=rng.random() < 0.2 + j_per_token / 2,
                        extracted="42",
                        detail=None,
                        output="x" * rng.randint(200, 1500),
                        prompt_tokens=300,
                        completion_tokens=150,
                        duration_s=2.0,
                        energy_j=j_per_token * 450 * rng.uniform(0.8, 1.2),
                        energy_method=method,
                        cost_usd=1e-6,
                        co2_g=1e-3,
                        created_at=now,
                    )
                )
                count += 1
    evals.close()
    return count


def seed(db: Path, receipts: int, days: float, eval_items: int) -> dict[str, Any]:
    """Write the receipts (time order, batches of 10,000) and one evaluation run."""
    from smallfirst.store.sqlite import SqliteStore

    rng = random.Random(42)
    now = time.time()
    times = sorted(now - rng.uniform(0, days * 86400) for _ in range(receipts))
    store = SqliteStore(db)
    started = time.perf_counter()
    for lo in range(0, receipts, 10_000):
        store.add_many(
            [plausible_receipt(rng, i, times[i]) for i in range(lo, min(lo + 10_000, receipts))]
        )
    store.close()
    seconds = time.perf_counter() - started
    count = _seed_evals(db, rng, eval_items, now)
    return {
        "receipts": receipts,
        "days": days,
        "seed_s": round(seconds, 2),
        "eval_results": count,
        "db_mib": round(db.stat().st_size / 2**20, 1),
    }


def time_requests(send: Callable[[], int], n: int, warmup: int) -> tuple[dict[str, float], int]:
    """Milliseconds per call of ``send`` (which returns the response size in bytes)."""
    size = 0
    for _ in range(warmup):
        send()
    lat = []
    for _ in range(n):
        start = time.perf_counter()
        size = send()
        lat.append((time.perf_counter() - start) * 1000)
    return summarize(lat, unit="ms", quantiles=(50, 95)), size


Case = tuple[str, str, str, Callable[[], int]]  # endpoint, period, path, send


def cases(client: httpx.Client, pool: ThreadPoolExecutor) -> list[Case]:
    """Every request the page makes, per period, plus a whole refresh and the cache miss."""

    def getter(path: str, params: dict[str, Any]) -> Callable[[], int]:
        def send() -> int:
            r = client.get(path, params=params)
            r.raise_for_status()
            return len(r.content)

        return send

    out: list[Case] = []
    for label, since in PERIODS.items():
        q: dict[str, Any] = {"since": since} if since else {}
        for name, path, params in (
            ("summary", "/smallfirst/v1/summary", q),
            ("timeseries", "/smallfirst/v1/dashboard/timeseries", q),
            ("latest 20 receipts", "/smallfirst/v1/receipts", {**q, "limit": 20}),
        ):
            shown = path + ("?limit=20" if "limit" in params else "")
            out.append((name, label, shown, getter(path, params)))
    frontier = "/smallfirst/v1/dashboard/frontier"
    out.append(("frontier (cached)", "-", frontier, getter(frontier, {})))
    # alternating the run parameter defeats the one-entry cache: every call summarises
    flip = iter(range(10**9))
    frontier_all, frontier_run = getter(frontier, {}), getter(frontier, {"run": "bench"})
    out.append(
        (
            "frontier (cache miss)",
            "-",
            frontier + "[?run=bench]",
            lambda: (frontier_all if next(flip) % 2 else frontier_run)(),
        )
    )
    out.append(("page HTML", "-", "/dashboard", getter("/dashboard", {})))
    meta = "/smallfirst/v1/dashboard/meta"
    out.append(("meta", "-", meta, getter(meta, {})))
    for label, since in PERIODS.items():
        q = {"since": since} if since else {}
        sends = [
            getter("/smallfirst/v1/summary", q),
            getter("/smallfirst/v1/dashboard/timeseries", q),
            getter(frontier, {}),
            getter("/smallfirst/v1/receipts", {**q, "limit": 20}),
        ]

        def refresh(sends: list[Callable[[], int]] = sends) -> int:
            return sum(pool.map(lambda s: s(), sends))

        out.append(("whole page refresh (4 at once)", label, "(the page's 4)", refresh))
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = script.parser(__doc__, area="dashboard", quick="fewer receipts and requests")
    p.add_argument("--receipts", type=int, help="receipts to seed (default 100000; quick 10000)")
    p.add_argument("--days", type=float, default=7.0, help="spread them over this many days")
    p.add_argument("--n", type=int, help="timed requests per endpoint (default 50; quick 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed requests first")
    p.add_argument("--eval-items", type=int, default=200, help="items per model and benchmark")
    p.add_argument(
        "--models-dir",
        type=Path,
        help="the real models directory (default: SMALLFIRST_MODELS_DIR or the data dir's)",
    )
    args = p.parse_args(argv)
    args.receipts = args.receipts or (10_000 if args.quick else 100_000)
    args.n = args.n or (10 if args.quick else 50)
    return args


def measure(args: argparse.Namespace, models_dir: Path) -> tuple[dict[str, Any], list[Any]]:
    """Seed a scratch data directory, serve it, time every case; (seeded, measured)."""
    with scratch_dir() as scratch:
        print(f"seeding {args.receipts:,} receipts over {args.days:g} days ...", flush=True)
        seeded = seed(scratch / "smallfirst.db", args.receipts, args.days, args.eval_items)
        print(
            f"   {seeded['seed_s']} s; {seeded['eval_results']:,} evaluation results; "
            f"database {seeded['db_mib']} MiB",
            flush=True,
        )
        settings = {"data_dir": str(scratch), "models_dir": str(models_dir)}
        measured = []
        with (
            running_gateway(scratch, settings=settings) as gateway,
            httpx.Client(base_url=gateway.url, timeout=60) as client,
            ThreadPoolExecutor(max_workers=4) as pool,
        ):
            for name, period, path, send in cases(client, pool):
                stats, size = time_requests(send, args.n, args.warmup)
                measured.append(
                    {"endpoint": name, "period": period, "path": path, "bytes": size, **stats}
                )
                print(
                    f"   {name:32s} {period:4s} p50 {stats['p50_ms']:7.1f} ms  "
                    f"p95 {stats['p95_ms']:7.1f} ms",
                    flush=True,
                )
    return seeded, measured


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from smallfirst.settings import Settings

    models_dir = args.models_dir or Settings().models_path
    run = script.start("dashboard_endpoints", "dashboard endpoints", args)
    seeded, measured = measure(args, models_dir)
    headers = [
        "endpoint",
        "period",
        "p50 ms",
        "p95 ms",
        "max ms",
        "bytes",
        f"p95 < {TARGET_P95_MS:g} ms",
    ]
    rows = [
        [
            m["endpoint"],
            m["period"],
            fmt(m["p50_ms"], 1),
            fmt(m["p95_ms"], 1),
            fmt(m["max_ms"], 1),
            f"{m['bytes']:,}",
            "yes" if m["p95_ms"] < TARGET_P95_MS else "NO",
        ]
        for m in measured
    ]
    single = [m for m in measured if not m["endpoint"].startswith("whole page")]
    met = all(m["p95_ms"] < TARGET_P95_MS for m in single)
    verdict = (
        f"every endpoint p95 < {TARGET_P95_MS:g} ms: {'met' if met else 'NOT met'} "
        f"(slowest p95: {max(m['p95_ms'] for m in single):.1f} ms)"
    )
    notes = [
        f"{args.receipts:,} receipts over the last {args.days:g} days "
        f"({seeded['db_mib']} MiB database), {seeded['eval_results']:,} evaluation results",
        f"{args.n} sequential requests per row after {args.warmup} warm-up (httpx keep-alive, "
        "whole response read); times are as the client saw them",
        "periods are the page's: since=1h, since=1d and no filter (all receipts)",
        "whole page refresh: the four requests a refresh makes, sent at once from four threads",
        "frontier (cache miss): alternating run=bench and no run, so every request summarises "
        "the evaluation results afresh",
    ]
    result = {
        "parameters": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "seeded": seeded,
        "target": f"p95 < {TARGET_P95_MS:g} ms per endpoint",
        "meets_target": met,
        "endpoints": measured,
    }
    run.finish(
        result,
        headers=headers,
        rows=rows,
        notes=notes,
        verdicts=[verdict],
        title=f"Dashboard endpoints with {args.receipts:,} receipts",
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
