"""What API keys and budgets cost per request, and whether 200 racing clients overspend.

Three ``smallfirst serve`` processes in front of the same stub upstream (``overhead.py``'s
canned-bytes server, a priced remote model with a per-token energy profile), identical but
that one has an API key (budgets in USD, Wh and gCO2, no rate limit) and two have none
(open mode; their difference is the measurement's noise floor). All keep receipts.
Sequential streaming requests alternate over the three in blocks;
the latency the key adds is keys on minus keys off: the key check (one SELECT and an HMAC),
the worst-case reservation (one ``BEGIN IMMEDIATE`` conditional UPDATE) and the settlement
(one UPDATE). Target: p50 added <= 0.3 ms.

Then ``--clients`` (200) concurrent clients race on one fresh key whose dollar budget fits
exactly ``--fit`` (20) worst-case requests. Reported: how many were answered and how many
got 429 ``insufficient_quota``, what the key spent against its budget (the overspend,
target 0), and the gap between what it spent and the sum of its receipts (target 0). The
stub answers at once, so requests that settle early give back the unused part of their
worst case and more than ``--fit`` may be answered: that is not overspending.

    PYTHONPATH=src:bench .venv/bin/python bench/access_overhead.py [--quick]
"""

from __future__ import annotations

import asyncio
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
from overhead import STUB_MODEL, blocks, check, request_body
from smallfirst.store.keys import ApiKey, KeySpec, KeyStore
from smallfirst.testing import free_port

TARGET_P50_ADDED_MS = 0.3
IN_USD, OUT_USD = 1.0, 2.0  # the stub's price per million tokens
PROFILE = {"j_per_input_token": 0.5, "j_per_output_token": 1.0}
# "off2" is a second keys-off gateway: its difference from "off" is the noise floor
NAMES = ("off", "on", "off2")
GENEROUS = KeySpec(name="bench", budget_usd=1e9, budget_wh=1e9, budget_co2_g=1e9)


def parse_args(argv: Sequence[str] | None) -> Any:
    p = script.parser(__doc__, area="access", quick="fewer requests")
    p.add_argument("--n", type=int, help="sequential requests per gateway (2000; quick 300)")
    p.add_argument("--block", type=int, default=100, help="requests per interleaved block")
    p.add_argument("--warmup", type=int, default=100, help="warm-up requests per gateway")
    p.add_argument("--clients", type=int, default=200, help="clients in the budget race")
    p.add_argument("--fit", type=int, default=20, help="worst cases the race's budget fits")
    args = p.parse_args(argv)
    args.n = args.n or (300 if args.quick else 2000)
    return args


def prepare(data: Path, keyed: bool) -> str | None:
    """The data directory: the stub's energy profile, and a key when ``keyed``."""
    data.mkdir(parents=True)
    profile = {"model": STUB_MODEL, **PROFILE, "method": "configured", "source": "bench"}
    (data / "profiles.json").write_text(json.dumps({STUB_MODEL: profile}))
    if not keyed:
        return None
    store = KeyStore(data / "smallfirst.db", data)
    _, secret = store.create(GENEROUS)
    store.close()
    return secret


@contextlib.contextmanager
def servers(tmp: Path) -> Iterator[tuple[dict[str, Gateway], dict[str, str | None]]]:
    stub_port = free_port()
    here = Path(__file__).resolve().with_name("overhead.py")
    stub_url = f"http://127.0.0.1:{stub_port}"
    model: dict[str, str | float] = {
        "name": STUB_MODEL,
        "base_url": stub_url + "/v1",
        "model_id": STUB_MODEL,
        "price_input_per_mtok_usd": IN_USD,
        "price_output_per_mtok_usd": OUT_USD,
    }
    with contextlib.ExitStack() as stack:
        stub_cmd = [PYTHON, str(here), "--stub-server", "--port", str(stub_port)]
        stub = stack.enter_context(Child("stub", stub_cmd, log_path=tmp / "stub.log"))
        stub.wait_ready(stub_url + "/health")
        gateways, secrets = {}, {}
        for name in NAMES:
            secrets[name] = prepare(tmp / name, keyed=name == "on")
            settings = {"data_dir": str(tmp / name), "reference_model": "gpt-4o-mini"}
            gateways[name] = stack.enter_context(
                running_gateway(
                    tmp,
                    name=f"keys-{name}",
                    default_model=STUB_MODEL,
                    settings=settings,
                    models=[model],
                )
            )
        yield gateways, secrets


def sequential(
    client: httpx.Client, url: str, n: int, body: bytes, secret: str | None
) -> list[float]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {secret or 'none'}"}
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.post(url, content=body, headers=headers)
        out.append(time.perf_counter() - t0)
        check(response)
    return out


async def race(url: str, secret: str, clients: int, body: bytes) -> list[int]:
    """Every client posts once, all at once; their statuses."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"content-type": "application/json", "authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(limits=limits, timeout=120, headers=headers) as client:
        await asyncio.gather(
            *(client.get(url.rsplit("/v1/", 1)[0] + "/health") for _ in range(clients))
        )
        answers = await asyncio.gather(*(client.post(url, content=body) for _ in range(clients)))
    for r in answers:
        if r.status_code == 429 and r.json()["error"]["code"] != "insufficient_quota":
            raise RuntimeError(f"unexpected 429: {r.text}")
    return [r.status_code for r in answers]


def budget_race(gateway: Gateway, data: Path, args: Any, body: bytes) -> dict[str, Any]:
    from smallfirst.engines.base import GenerationRequest, Sampling
    from smallfirst.server.access import prompt_bound
    from smallfirst.types import Message

    sent = json.loads(body)
    gen = GenerationRequest(
        Sampling(), messages=tuple(Message(m["role"], m["content"]) for m in sent["messages"])
    )
    worst = (prompt_bound(gen) * IN_USD + sent["max_tokens"] * OUT_USD) / 1e6
    budget = args.fit * worst
    store = KeyStore(data / "smallfirst.db", data)
    key, secret = store.create(KeySpec(name="race", budget_usd=budget))
    statuses = asyncio.run(race(gateway.base_url + "/chat/completions", secret, args.clients, body))
    time.sleep(0.5)  # the last receipts settle as their streams end
    after = store.get(key.id)
    store.close()
    from smallfirst.store.sqlite import SqliteStore

    receipts = SqliteStore(data / "smallfirst.db")
    spent_by_receipts = receipts.summary(key_id=key.id)["total"]["cost_usd"]
    receipts.close()
    return race_outcome(statuses, budget, worst, after, spent_by_receipts)


def race_outcome(
    statuses: list[int], budget: float, worst: float, after: ApiKey, by_receipts: float
) -> dict[str, Any]:
    """A budget race's figures: answered, refused, and what the key spent against its
    budget (the overspend) and against its receipts."""
    spent = after.spent.usd or 0.0
    return {
        "clients": len(statuses),
        "budget_usd": budget,
        "worst_case_usd": worst,
        "answered": statuses.count(200),
        "insufficient_quota": statuses.count(429),
        "other": len(statuses) - statuses.count(200) - statuses.count(429),
        "spent_usd": spent,
        "reserved_left_usd": after.reserved.usd,
        "overspend_usd": max(0.0, spent - budget),
        "spent_minus_receipts_usd": spent - (by_receipts or 0.0),
    }


def in_process(data: Path, n: int) -> dict[str, Any]:
    """The same three steps without HTTP: authenticate, reserve, settle; ms each round."""
    from smallfirst.store.budgets import Amounts

    store = KeyStore(data / "smallfirst.db", data)
    _, secret = store.create(KeySpec(name="micro", budget_usd=1e9, budget_wh=1e9))
    worst, actual = Amounts(1e-5, 1e-4, 1e-3), Amounts(5e-6, 5e-5, 5e-4)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        key = store.authenticate(secret)
        held = store.budgets.reserve(key, worst, 3600.0)
        store.budgets.settle(key, held, actual)
        out.append((time.perf_counter() - t0) * 1000)
    store.close()
    return summarize(out, unit="ms", quantiles=(50, 99), digits=4)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run = script.start(
        "access_overhead", "API keys and budgets: added latency, racing clients", args
    )
    body = request_body(stream=True)
    with scratch_dir() as tmp, servers(tmp) as (gateways, secrets):
        urls = {n: g.base_url + "/chat/completions" for n, g in gateways.items()}
        lat: dict[str, list[float]] = {n: [] for n in NAMES}
        with httpx.Client(timeout=60) as client:
            for n in lat:
                sequential(client, urls[n], args.warmup, body, secrets[n])
            for size in blocks(args.n, args.block):
                for n in lat:
                    lat[n] += sequential(client, urls[n], size, body, secrets[n])
        raced = budget_race(gateways["on"], tmp / "on", args, body)
        micro = in_process(tmp / "micro", args.n)
    stats = {
        n: summarize([x * 1000 for x in v], unit="ms", quantiles=(50, 99), digits=4)
        for n, v in lat.items()
    }
    added = {q: stats["on"][q] - stats["off"][q] for q in ("p50_ms", "p99_ms")}
    control = {q: stats["off2"][q] - stats["off"][q] for q in ("p50_ms", "p99_ms")}
    ok = added["p50_ms"] <= TARGET_P50_ADDED_MS
    headers = ["path", "p50 ms", "p99 ms", "mean ms"]
    rows = [
        [
            {"off": "keys off", "on": "keys on", "off2": "keys off, a second gateway"}[n],
            fmt(stats[n]["p50_ms"], 3),
            fmt(stats[n]["p99_ms"], 3),
            fmt(stats[n]["mean_ms"], 3),
        ]
        for n in NAMES
    ]
    rows.append(["added by keys + budgets", fmt(added["p50_ms"], 3), fmt(added["p99_ms"], 3), ""])
    rows.append(
        ["noise floor (off2 − off)", fmt(control["p50_ms"], 3), fmt(control["p99_ms"], 3), ""]
    )
    rows.append(
        [
            "in process: authenticate + reserve + settle",
            fmt(micro["p50_ms"], 3),
            fmt(micro["p99_ms"], 3),
            fmt(micro["mean_ms"], 3),
        ]
    )
    verdicts = [
        f"p50 added {added['p50_ms']:.3f} ms: target <= {TARGET_P50_ADDED_MS} ms "
        f"{'met' if ok else 'NOT met'} (two identical keys-off gateways differ by "
        f"{control['p50_ms']:.3f} ms)",
        f"{raced['clients']} clients on a budget of {args.fit} worst cases: {raced['answered']} "
        f"answered, {raced['insufficient_quota']} got 429 insufficient_quota, "
        f"{raced['other']} other; overspend ${raced['overspend_usd']:.3g} (target 0); spent "
        f"minus receipts ${raced['spent_minus_receipts_usd']:.3g}",
    ]
    notes = [
        f"{args.n} sequential streaming requests per gateway after {args.warmup} warm-up, "
        f"alternating blocks of {args.block}; three gateway processes, identical but for the "
        "key (off, on, and a second off whose difference from the first is the noise floor)",
        "budgets on the keyed gateway's key: USD, Wh and gCO2 (each reserved and settled); "
        "no rate limit",
        "in process: the store's three steps in a loop, same database settings, no HTTP: "
        "the floor of what the key path adds, less sensitive to a busy machine",
    ]
    run.finish(
        {
            "parameters": {k: v for k, v in vars(args).items() if k != "out"},
            "target": f"p50 added latency <= {TARGET_P50_ADDED_MS} ms; overspend 0",
            "latency": stats,
            "added_ms": added,
            "noise_floor_ms": control,
            "meets_target": ok,
            "race": raced,
            "in_process_ms": micro,
        },
        headers=headers,
        rows=rows,
        notes=notes,
        verdicts=verdicts,
        title="API keys and budgets over a stub upstream",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
