"""Soak: does the gateway stay correct, lean and steady for half an hour under load?

One ``smallfirst serve`` child answers ``--clients`` client threads (default 32) for
``--duration-s`` (default 1,800). Each client loops: pick a model (SmolLM2-135M, in-process,
with probability ``--local-share``; otherwise ``stub``, a loopback stub upstream that answers
after ``--stub-delay-ms`` and dribbles its stream), a body or a stream (``--stream-share``),
and for ``--drop-share`` of all requests a stream the client hangs up on after its first
chunk; then it waits a random think time up to ``--think-ms``.

What it reports:

* **errors**: every outcome that is neither a 200 with a receipt, a deliberate hang-up, nor
  a 429 ``server_overloaded`` (SmolLM2 runs one generation at a time behind a bounded
  queue, so a burst of local requests is refused on purpose). Target 0.
* **latency** p50 and p99 of successful requests per ``--window-s`` window (default 5 min),
  per model. Target: flat (the verdict compares the slowest window's p50 with the fastest).
* **the gateway's vitals** every 5 s from ``/proc``: resident memory (target: growth under
  10% from the end of ``--warmup-s`` to the end), open file descriptors and threads (flat).
* **nothing lost**: after the gateway is stopped (SIGTERM: it drains), every acknowledged
  receipt id must be in its database, and ``PRAGMA integrity_check`` must say ok.

The machine's 1-minute load average, averaged per window, is in the table: other work on
the machine shows up as latency, not as errors. The default mix (2% SmolLM2, think time up
to 1 s) keeps the in-process model below its capacity on 2 cores, so the soak measures
steady load, not overload (``overload.py`` does that).

    .venv/bin/python bench/soak.py [--quick] [--duration-s 1800] [--clients 32]
"""

from __future__ import annotations

import random
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from harness import script
from harness.gateway import load_model, running_gateway
from harness.load import PROMPTS, Outcome, Vitals, VitalsSample, send
from harness.procs import scratch_dir
from harness.stats import fmt, percentile
from smallfirst.settings import Settings
from smallfirst.stub_upstream import StubUpstream

SMOL = "smollm2-135m-instruct"


def _client(
    url: str, args: Any, seed: int, deadline: float, out: list[Outcome], lock: threading.Lock
) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120) as http:
        while time.monotonic() < deadline:
            local = rng.random() < args.local_share
            drop = rng.random() < args.drop_share
            stream = drop or rng.random() < args.stream_share
            o = send(
                http,
                SMOL if local else "stub",
                kind="smollm2" if local else "stub",
                stream=stream,
                drop=drop,
                max_tokens=args.max_tokens,
                prompt=rng.choice(PROMPTS),
            )
            with lock:
                out.append(o)
            time.sleep(rng.uniform(0, args.think_ms / 1000))


def _is_error(o: Outcome) -> bool:
    if o.dropped or o.overloaded:
        return False
    return not (o.status == 200 and o.receipt_id and o.code is None)


def _windows(
    outcomes: list[Outcome], vitals: list[VitalsSample], t0: float, args: Any
) -> list[dict[str, Any]]:
    rows = []
    n_windows = max(1, int(args.duration_s // args.window_s))
    for w in range(n_windows):
        lo, hi = t0 + w * args.window_s, t0 + (w + 1) * args.window_s
        inside = [o for o in outcomes if lo <= o.started_s < hi]
        row: dict[str, Any] = {"window": w, "start_s": lo - t0, "end_s": hi - t0, "n": len(inside)}
        for kind in ("stub", "smollm2"):
            ok = [o.latency_s * 1000 for o in inside if o.kind == kind and not _is_error(o)
                  and not o.dropped and not o.overloaded]  # fmt: skip
            row[kind] = {
                "ok": len(ok),
                "p50_ms": round(percentile(ok, 50), 1),
                "p99_ms": round(percentile(ok, 99), 1),
                "overloaded": sum(1 for o in inside if o.kind == kind and o.overloaded),
            }
        row["errors"] = sum(1 for o in inside if _is_error(o))
        loads = [v.load_1m for v in vitals if lo <= v.at_s < hi]
        row["load_1m"] = round(sum(loads) / len(loads), 2) if loads else None
        rows.append(row)
    return rows


def _vitals_summary(v: Vitals, t0: float, warmup_s: float) -> dict[str, Any]:
    after = [s for s in v.samples if s.at_s >= t0 + warmup_s] or v.samples
    first, last = after[0], v.samples[-1]
    return {
        "rss_mb_start": round(v.samples[0].rss_mb, 1),
        "rss_mb_after_warmup": round(first.rss_mb, 1),
        "rss_mb_end": round(last.rss_mb, 1),
        "rss_mb_max": round(max(s.rss_mb for s in after), 1),
        "rss_growth_pct": round(100 * (last.rss_mb - first.rss_mb) / first.rss_mb, 2),
        "fds_after_warmup": first.fds,
        "fds_end": last.fds,
        "fds_max": max(s.fds for s in after),
        "threads_after_warmup": first.threads,
        "threads_end": last.threads,
        "threads_max": max(s.threads for s in after),
        "samples": [asdict(s) | {"at_s": round(s.at_s - t0, 1)} for s in v.samples],
    }


def _lost(db: Path, outcomes: list[Outcome]) -> tuple[int, str]:
    acked = {o.receipt_id for o in outcomes if o.receipt_id}
    with sqlite3.connect(db) as conn:
        integrity = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        stored = {r[0] for r in conn.execute("SELECT id FROM receipts")}
    conn.close()
    return len(acked - stored), integrity


def run_soak(args: Any, tmp: Path) -> dict[str, Any]:
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stub = StubUpstream(delay_s=args.stub_delay_ms / 1000, token_delay_s=0.002)
    settings: dict[str, str | int | bool] = {
        "data_dir": str(tmp / "data"),
        "models_dir": str(Settings().models_path),
        "default_model": "stub",
        "default_router": False,
    }
    models = [{"name": "stub", "base_url": stub.url, "model_id": "stub"}]
    with stub, running_gateway(tmp, name="soak", settings=settings, models=models) as gw:
        with httpx.Client(base_url=gw.url, timeout=120) as http:
            load_model(http, SMOL)
        t0 = time.monotonic()
        deadline = t0 + args.duration_s
        threads = [
            threading.Thread(target=_client, args=(gw.url, args, i, deadline, outcomes, lock))
            for i in range(args.clients)
        ]
        with Vitals(gw.child.pid, every_s=5.0) as vitals:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                time.sleep(min(60.0, args.window_s))
                with lock:
                    done = len(outcomes)
                    errs = sum(1 for o in outcomes if _is_error(o))
                last = vitals.samples[-1]
                print(
                    f"  {time.monotonic() - t0:7.0f} s  {done:,} requests, {errs} errors, "
                    f"RSS {last.rss_mb:.0f} MB, {last.fds} fds, {last.threads} threads",
                    flush=True,
                )
            for t in threads:
                t.join()
        gw.child.stop(grace_s=60)  # SIGTERM: the gateway drains and closes its store
    lost, integrity = _lost(tmp / "data" / "smallfirst.db", outcomes)
    errors = [o for o in outcomes if _is_error(o)]
    codes: dict[str, int] = {}
    for o in errors:
        key = f"{o.status} {o.code}"
        codes[key] = codes.get(key, 0) + 1
    return {
        "requests": len(outcomes),
        "by_kind": {k: sum(1 for o in outcomes if o.kind == k) for k in ("stub", "smollm2")},
        "dropped_on_purpose": sum(1 for o in outcomes if o.dropped),
        "overloaded_429": sum(1 for o in outcomes if o.overloaded),
        "errors": len(errors),
        "error_codes": codes,
        "acknowledged": sum(1 for o in outcomes if o.receipt_id),
        "acknowledged_missing": lost,
        "integrity": integrity,
        "windows": _windows(outcomes, vitals.samples, t0, args),
        "vitals": _vitals_summary(vitals, t0, args.warmup_s),
    }


def _spread(windows: list[dict[str, Any]], kind: str, key: str) -> float:
    values = [w[kind][key] for w in windows if w[kind]["ok"]]
    return max(values) / min(values) if values and min(values) > 0 else float("nan")


def _report(res: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    rows = []
    for w in res["windows"]:
        s, m = w["stub"], w["smollm2"]
        rows.append([
            f"{w['start_s'] / 60:g}-{w['end_s'] / 60:g} min", fmt(w["load_1m"]), str(w["n"]),
            str(w["errors"]),
            fmt(s["p50_ms"], 1), fmt(s["p99_ms"], 1), fmt(m["p50_ms"], 1), fmt(m["p99_ms"], 1),
            str(m["overloaded"]),
        ])  # fmt: skip
    v = res["vitals"]
    notes = [
        f"requests {res['requests']:,} (stub {res['by_kind']['stub']:,}, SmolLM2 "
        f"{res['by_kind']['smollm2']:,}); hung up on purpose {res['dropped_on_purpose']:,}; "
        f"429 server_overloaded {res['overloaded_429']:,}; errors {res['errors']} "
        f"{res['error_codes'] or ''}",
        f"RSS {v['rss_mb_start']} MB at start, {v['rss_mb_after_warmup']} after warm-up, "
        f"{v['rss_mb_end']} at the end (growth {v['rss_growth_pct']}%, max {v['rss_mb_max']})",
        f"fds {v['fds_after_warmup']} after warm-up, {v['fds_end']} at the end (max "
        f"{v['fds_max']}); threads {v['threads_after_warmup']} -> {v['threads_end']} (max "
        f"{v['threads_max']})",
        f"acknowledged receipts {res['acknowledged']:,}, missing after shutdown "
        f"{res['acknowledged_missing']}; integrity_check {res['integrity']}",
        f"p50 spread across windows (slowest/fastest): stub "
        f"{_spread(res['windows'], 'stub', 'p50_ms'):.2f}x, SmolLM2 "
        f"{_spread(res['windows'], 'smollm2', 'p50_ms'):.2f}x",
    ]
    return rows, notes


def _verdicts(res: dict[str, Any], args: Any) -> list[str]:
    v = res["vitals"]
    fd_flat = v["fds_end"] <= v["fds_after_warmup"] + args.clients
    thr_flat = v["threads_end"] <= v["threads_after_warmup"] + 4
    spread = _spread(res["windows"], "stub", "p50_ms")
    return [
        f"{'PASS' if res['errors'] == 0 else 'FAIL'}: {res['errors']} errors (target 0)",
        f"{'PASS' if v['rss_growth_pct'] < 10 else 'FAIL'}: RSS growth after warm-up "
        f"{v['rss_growth_pct']}% (target < 10%)",
        f"{'PASS' if fd_flat and thr_flat else 'FAIL'}: fds and threads flat",
        f"{'PASS' if res['acknowledged_missing'] == 0 and res['integrity'] == 'ok' else 'FAIL'}"
        ": no acknowledged receipt missing, integrity ok",
        f"{'PASS' if spread <= 1.5 else 'CHECK'}: stub p50 slowest/fastest window {spread:.2f}x "
        "(flat: <= 1.5x)",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = script.parser(__doc__, area="resilience", quick="90 s, 30 s windows")
    p.add_argument("--duration-s", type=float, default=1800.0)
    p.add_argument("--window-s", type=float, default=300.0)
    p.add_argument("--warmup-s", type=float, default=120.0)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--local-share", type=float, default=0.02, help="requests to SmolLM2")
    p.add_argument("--stream-share", type=float, default=0.5)
    p.add_argument("--drop-share", type=float, default=0.05, help="streams hung up on")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--think-ms", type=float, default=1000.0, help="most a client waits between")
    p.add_argument("--stub-delay-ms", type=float, default=20.0)
    args = p.parse_args(argv)
    if args.quick:
        args.duration_s, args.window_s, args.warmup_s = 90.0, 30.0, 20.0
    run = script.start("soak", "soak: errors, memory, latency over time", args)
    with scratch_dir() as tmp:
        res = run_soak(args, tmp)
    rows, notes = _report(res)
    verdicts = _verdicts(res, args)
    headers = ["window", "load", "requests", "errors", "stub p50 ms", "stub p99 ms",
               "SmolLM2 p50 ms", "SmolLM2 p99 ms", "SmolLM2 429s"]  # fmt: skip
    result = {"settings": vars(args) | {"out": str(args.out)}, **res}
    run.finish(result, headers=headers, rows=rows, notes=notes, verdicts=verdicts,
               echo_notes=True)  # fmt: skip
    return 0 if all(v.startswith("PASS") for v in verdicts[:4]) else 1


if __name__ == "__main__":
    sys.exit(main())
