"""Requests per second through 1, 2 and 3 gateway replicas on one PostgreSQL, the
CPU-seconds each request costs, and the budget race at 3 replicas x 100 clients.

Three ``smallfirst serve`` processes (``smallfirst.replicas``, the tests' launcher) share
one throwaway PostgreSQL cluster (``smallfirst.pg_cluster``, run with PostgreSQL's default
``fsync=on``) and one data directory; their only model is ``overhead.py``'s canned-bytes
stub upstream in its own process, priced, with a per-token energy profile. Every request
carries one API key with a budget and a rate limit that never refuse, so each one runs
the whole keyed path on PostgreSQL: the key check, the shared rate window, the budget
reservation, the receipt, the settlement.

Each round measures 1, 2 and 3 replicas (the order rotates round by round) for
``--seconds``: ``--clients`` closed-loop clients (asyncio, one keep-alive connection each),
client ``i`` on replica ``i mod N``, no load balancer. Reported per N: requests/s, latency
p50/p99, and CPU-seconds per request from ``/proc`` (user + system): the gateways' (the N
in use), PostgreSQL's (the postmaster and its backends), the stub's and this client's.
Everything runs on this machine's 2 cores, so requests/s cannot grow with N here; the
CPU-seconds per request are what say how the gateways would scale on more machines. Beside
them: LiteLLM's published 3,000 RPS on 33 pods of 4 vCPU (about 91 RPS per pod), which is
at most 3,000 / 132 = 22.7 requests per vCPU-second, 0.044 CPU-seconds per request, if
those pods were CPU-bound (their database is not in that figure).

Last, ``--race`` (100) clients at once, round-robin over the 3 replicas, spend one fresh key
whose budget fits exactly ``--fit`` (20) worst cases: answered, 429s, spent against the
budget (the overspend, target 0), spent against the sum of its receipts (target 0). The
stub answers at once, so requests that settle early give back the unused part of their
worst case and more than ``--fit`` may be answered; that is not overspending.

    PYTHONPATH=src:bench .venv/bin/python bench/replicas.py [--quick] [--rounds 3]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from access_overhead import race_outcome
from harness import PYTHON, script
from harness.procs import Child, process_cpu_seconds, scratch_dir
from harness.stats import fmt, summarize
from overhead import STUB_MODEL, check, request_body
from smallfirst.pg_cluster import Cluster
from smallfirst.replicas import Replicas, Value, write_config
from smallfirst.store.keys import KeySpec, KeyStore
from smallfirst.store.sqlite import SqliteStore
from smallfirst.testing import free_port

COUNTS = (1, 2, 3)
IN_USD, OUT_USD = 1.0, 2.0  # the stub's price per million tokens
PROFILE = {"j_per_input_token": 0.5, "j_per_output_token": 1.0}
LITELLM_RPS, LITELLM_PODS, LITELLM_VCPU_PER_POD = 3000, 33, 4


def parse_args(argv: Sequence[str] | None) -> Any:
    p = script.parser(__doc__, area="store", quick="one short round")
    p.add_argument("--rounds", type=int, help="interleaved rounds (3; quick 1)")
    p.add_argument("--seconds", type=float, help="seconds per replica count per round (5; 2)")
    p.add_argument("--clients", type=int, default=24, help="closed-loop clients (24)")
    p.add_argument("--race", type=int, default=100, help="clients in the budget race (100)")
    p.add_argument("--fit", type=int, default=20, help="worst cases the race's budget fits")
    p.add_argument(
        "--no-rate-limit",
        action="store_true",
        help="the load's key without rpm/tpm (isolates the shared rate window's cost)",
    )
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (2.0 if args.quick else 5.0)
    return args


@dataclass(frozen=True)
class Setup:
    replicas: Replicas
    cluster: Cluster
    stub: Child
    url: str  # the database
    data: Path  # the replicas' data directory (keys.secret)


@contextlib.contextmanager
def running(tmp: Path) -> Iterator[Setup]:
    stub_port = free_port()
    stub_url = f"http://127.0.0.1:{stub_port}"
    here = Path(__file__).resolve().with_name("overhead.py")
    stub_cmd = [PYTHON, str(here), "--stub-server", "--port", str(stub_port)]
    with (
        Cluster(fsync=True) as cluster,
        Child("stub", stub_cmd, log_path=tmp / "stub.log") as stub,
    ):
        stub.wait_ready(stub_url + "/health")
        data = tmp / "data"
        settings: dict[str, Value] = {
            "data_dir": str(data),
            "database_url": cluster.url(),
            "default_model": STUB_MODEL,
            "default_router": False,
            "reference_model": STUB_MODEL,
            "response_cache": False,  # the same greedy body every time: no answer from memory
            "log_level": "warning",
        }
        model: dict[str, Value] = {
            "name": STUB_MODEL,
            "base_url": stub_url + "/v1",
            "model_id": STUB_MODEL,
        }
        model |= {"price_input_per_mtok_usd": IN_USD, "price_output_per_mtok_usd": OUT_USD}
        config = write_config(tmp / "replica.toml", settings, [model], {STUB_MODEL: PROFILE})
        KeyStore(cluster.url(), data).close()  # migrated before three replicas race to it
        with Replicas(len(COUNTS), config, tmp) as replicas:
            yield Setup(replicas, cluster, stub, cluster.url(), data)


def postgres_cpu_seconds(cluster: Cluster) -> float:
    """The postmaster's CPU (with its reaped children's) and its live backends' from /proc."""
    root = int((cluster.data / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(entry.name), int(fields[1])
        if pid == root:  # utime, stime, cutime, cstime
            ticks = sum(int(x) for x in fields[11:15])
        elif ppid == root:
            ticks = int(fields[11]) + int(fields[12])
        else:
            continue
        total += ticks / os.sysconf("SC_CLK_TCK")
    return total


def cpu_now(setup: Setup, pids: Sequence[int]) -> dict[str, float]:
    return {
        "gateways": sum(process_cpu_seconds(p) for p in pids),
        "postgresql": postgres_cpu_seconds(setup.cluster),
        "stub": setup.stub.cpu_seconds(),
        "client": time.process_time(),
    }


async def load(urls: Sequence[str], secret: str, clients: int, seconds: float) -> list[float]:
    """Closed loop: each client posts, reads, posts again until the time is up; the
    latency of each answered request, in ms."""
    body = request_body(stream=False)
    headers = {"content-type": "application/json", "authorization": f"Bearer {secret}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    async with httpx.AsyncClient(limits=limits, timeout=60, headers=headers) as client:
        # one connection per client opened before the clock starts
        await asyncio.gather(*(client.get(urls[i % len(urls)] + "/health") for i in range(clients)))
        end = time.perf_counter() + seconds

        async def one(url: str) -> None:
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                response = await client.post(url + "/v1/chat/completions", content=body)
                latencies.append((time.perf_counter() - t0) * 1000)
                check(response)

        await asyncio.gather(*(one(urls[i % len(urls)]) for i in range(clients)))
    return latencies


def measure(setup: Setup, secret: str, count: int, args: Any) -> dict[str, Any]:
    used = setup.replicas.replicas[:count]
    before = cpu_now(setup, [r.pid for r in used])
    t0 = time.perf_counter()
    latencies = asyncio.run(load([r.url for r in used], secret, args.clients, args.seconds))
    wall = time.perf_counter() - t0
    after = cpu_now(setup, [r.pid for r in used])
    return {
        "replicas": count,
        "requests": len(latencies),
        "wall_s": wall,
        "latency_ms": latencies,
        "cpu_s": {k: after[k] - before[k] for k in before},
    }


def connections(url: str) -> int:
    """Client connections open on the cluster now, this query's own left out: after the load,
    what the replicas' pools (two per replica, up to 8 each) grew to."""
    import psycopg

    sql = (
        "SELECT COUNT(*) FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def worst_usd() -> float:
    """The reservation of one request of ``request_body``: prompt bound and max_tokens."""
    from smallfirst.engines.base import GenerationRequest, Sampling
    from smallfirst.server.access import prompt_bound
    from smallfirst.types import Message

    sent = json.loads(request_body(stream=False))
    messages = tuple(Message(m["role"], m["content"]) for m in sent["messages"])
    bound = prompt_bound(GenerationRequest(Sampling(), messages=messages))
    return float(bound * IN_USD + sent["max_tokens"] * OUT_USD) / 1e6


async def race(urls: Sequence[str], secret: str, clients: int) -> list[int]:
    """Every client posts once, all at once, client ``i`` on ``urls[i mod N]``."""
    body = request_body(stream=False)
    headers = {"content-type": "application/json", "authorization": f"Bearer {secret}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120, headers=headers) as client:
        await asyncio.gather(*(client.get(urls[i % len(urls)] + "/health") for i in range(clients)))
        answers = await asyncio.gather(
            *(client.post(urls[i % len(urls)] + "/v1/chat/completions", content=body)
              for i in range(clients))
        )  # fmt: skip
    for r in answers:
        if r.status_code == 429 and r.json()["error"]["code"] != "insufficient_quota":
            raise RuntimeError(f"unexpected 429: {r.text}")
    return [r.status_code for r in answers]


def budget_race(setup: Setup, args: Any) -> dict[str, Any]:
    budget = args.fit * worst_usd()
    keys, receipts = KeyStore(setup.url, setup.data), SqliteStore(setup.url)
    try:
        key, secret = keys.create(KeySpec(name="race", budget_usd=budget))
        statuses = asyncio.run(race(setup.replicas.urls, secret, args.race))
        after = keys.get(key.id)
        by_receipts = receipts.summary(key_id=key.id)["total"]["cost_usd"]
    finally:
        keys.close()
        receipts.close()
    return {"replicas": len(setup.replicas.urls)} | race_outcome(
        statuses, budget, budget / args.fit, after, by_receipts
    )


def per_count(runs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for count in COUNTS:
        mine = [r for r in runs if r["replicas"] == count]
        n = sum(r["requests"] for r in mine)
        cpu = {k: sum(r["cpu_s"][k] for r in mine) / n for k in mine[0]["cpu_s"]}
        lat = summarize([x for r in mine for x in r["latency_ms"]], unit="ms", digits=2)
        out[count] = {
            "requests": n,
            "rps": n / sum(r["wall_s"] for r in mine),
            "rps_per_round": [round(r["requests"] / r["wall_s"], 1) for r in mine],
            "latency": lat,
            "cpu_s_per_request": cpu,
        }
    return out


def rows_of(figures: dict[int, dict[str, Any]]) -> list[list[str]]:
    rows = []
    for count, f in figures.items():
        cpu = f["cpu_s_per_request"]
        rows.append(
            [
                f"{count} replica" + ("s" if count > 1 else ""),
                fmt(f["rps"], 0),
                fmt(f["latency"]["p50_ms"], 1),
                fmt(f["latency"]["p99_ms"], 1),
                fmt(cpu["gateways"] * 1000, 2),
                fmt(cpu["postgresql"] * 1000, 2),
                fmt(cpu["stub"] * 1000, 2),
                fmt(cpu["client"] * 1000, 2),
                fmt(1 / cpu["gateways"], 0),
            ]
        )
    litellm_per_vcpu = LITELLM_RPS / (LITELLM_PODS * LITELLM_VCPU_PER_POD)
    rows.append(
        ["LiteLLM, published", f"{LITELLM_RPS:,} (33 pods)", "-", "-",
         fmt(1000 / litellm_per_vcpu, 1) + " (if CPU-bound)", "-", "-", "-",
         fmt(litellm_per_vcpu, 1)]
    )  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    name, title = "replicas", "Gateway replicas on one PostgreSQL"
    if args.no_rate_limit:  # its own file: the same figures without the shared rate window
        name, title = name + "-no-rate-limit", title + ", no rate limit"
    run = script.start(name, title, args)
    runs: list[dict[str, Any]] = []
    with scratch_dir() as tmp, running(tmp) as setup:
        keys = KeyStore(setup.url, setup.data)
        free = args.no_rate_limit
        spec = KeySpec(
            name="load",
            budget_usd=1e9,
            budget_wh=1e9,
            rpm=None if free else 10**8,
            tpm=None if free else 10**9,
        )
        _, secret = keys.create(spec)
        keys.close()
        asyncio.run(load(setup.replicas.urls, secret, args.clients, 1.0))  # warm-up
        for r in range(args.rounds):
            for count in COUNTS[r % 3 :] + COUNTS[: r % 3]:
                runs.append(last := measure(setup, secret, count, args))
                rps = last["requests"] / last["wall_s"]
                print(f"  round {r + 1}, {count} replica(s): {rps:.0f} req/s", flush=True)
        held = connections(setup.url)
        budget = budget_race(setup, args)
    figures = per_count(runs)
    one, three = figures[1]["cpu_s_per_request"], figures[3]["cpu_s_per_request"]
    notes = [
        f"{args.rounds} rounds x {args.seconds:g} s per replica count, counts rotated per round; "
        f"{args.clients} closed-loop clients, client i on replica i mod N; one key with a budget "
        + ("and no rate limit" if args.no_rate_limit else "and a rate limit (never refusing)")
        + " on every request",
        "everything on one machine's 2 cores (gateways, PostgreSQL with fsync=on, the stub, "
        "this client): requests/s cannot grow with N here; CPU ms per request is the figure "
        "that travels",
        f"gateway CPU per request: {one['gateways'] * 1000:.2f} ms at 1 replica, "
        f"{three['gateways'] * 1000:.2f} ms at 3; PostgreSQL's {one['postgresql'] * 1000:.2f} "
        f"and {three['postgresql'] * 1000:.2f} ms",
        "LiteLLM: 3,000 RPS on 33 pods of 4 vCPU as published, i.e. at most 22.7 requests per "
        "vCPU-second (0.044 CPU-s per request) if its pods were CPU-bound; its database is not "
        "in that figure",
        f"PostgreSQL connections held by the {len(COUNTS)} replicas' pools after the load: {held}",
        f"budget race, {budget['replicas']} replicas x {budget['clients']} clients on a budget "
        f"of {args.fit} worst cases: {budget['answered']} answered, "
        f"{budget['insufficient_quota']} got 429, overspend {budget['overspend_usd']:.3g} USD, "
        f"spent - receipts {budget['spent_minus_receipts_usd']:.3g} USD",
    ]
    verdicts = [f"overspend at 3 x {args.race}: {budget['overspend_usd']:.3g} USD (target 0)"]
    run.finish(
        {
            "args": vars(args) | {"out": str(args.out)},
            "per_replica_count": {str(k): v for k, v in figures.items()},
            "budget_race": budget,
            "connections_after_load": held,
            "runs": [{k: v for k, v in r.items() if k != "latency_ms"} for r in runs],
            "litellm_published": {
                "rps": LITELLM_RPS,
                "pods": LITELLM_PODS,
                "vcpu_per_pod": LITELLM_VCPU_PER_POD,
            },
        },
        headers=[
            "gateways",
            "req/s",
            "p50 ms",
            "p99 ms",
            "gateway CPU ms/req",
            "PostgreSQL CPU ms/req",
            "stub CPU ms/req",
            "client CPU ms/req",
            "req/s per gateway core",
        ],
        rows=rows_of(figures),
        notes=notes,
        verdicts=verdicts,
        echo_notes=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
