"""Crash loop: is an acknowledged receipt ever lost to ``kill -9``, or the database hurt?

A loopback stub upstream (``stub``, a remote model answering in about ``--delay-ms``) stands
in for a model, so no model loads and a round takes a second or two. Every round:

1. start ``smallfirst serve`` on the same data directory as every other round;
2. ``--clients`` threads send requests as fast as they are answered: chat and completions,
   streamed and not, in turn;
3. at a random moment (uniform in ``--kill-after-s`` after the first answer came back) send
   the gateway SIGKILL;
4. with the process gone, open its database: ``PRAGMA integrity_check`` must say ``ok``, and
   every acknowledged receipt must be there.

Acknowledged means the client saw the receipt: for a body, a 200 with an
``x-smallfirst-receipt-id`` header; for a stream, the final chunk carrying the ``smallfirst``
receipt (the gateway commits it before that chunk goes out). A request cut by the kill is
not acknowledged and may or may not be stored; both are correct.

    .venv/bin/python bench/crash_loop.py [--rounds 100] [--clients 8] [--seed 0]
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness import script
from harness.gateway import running_gateway
from harness.procs import scratch_dir
from smallfirst.stub_upstream import StubUpstream

MSG = [{"role": "user", "content": "Say something short."}]


@dataclass
class Acks:
    """What the clients of one round saw; shared by their threads under ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acknowledged: list[str] = field(default_factory=list)
    first: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    failed: int = 0  # refused, or cut by the kill before the receipt came back

    def add(self, receipt_id: str | None) -> None:
        with self.lock:
            self.sent += 1
            if receipt_id is None:
                self.failed += 1
            else:
                self.acknowledged.append(receipt_id)
                self.first.set()


def _request(http: httpx.Client, n: int) -> str | None:
    """One request (which kind depends on ``n``); its receipt id if it was acknowledged."""
    chat = n % 2 == 0
    stream = n % 4 >= 2
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body: dict[str, Any] = {"model": "stub", "max_tokens": 6, "stream": stream}
    body.update({"messages": MSG} if chat else {"prompt": "Once upon a time"})
    if not stream:
        r = http.post(path, json=body)
        return r.headers.get("x-smallfirst-receipt-id") if r.status_code == 200 else None
    receipt = None
    with http.stream("POST", path, json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                receipt = json.loads(line[6:]).get("smallfirst", receipt)
    return receipt["receipt_id"] if receipt else None


def _client(url: str, acks: Acks, stop: threading.Event, offset: int) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        n = offset
        while not stop.is_set():
            try:
                acks.add(_request(http, n))
            except (httpx.HTTPError, json.JSONDecodeError):
                acks.add(None)
            n += 1


@dataclass(frozen=True)
class Round:
    index: int
    kill_after_s: float
    sent: int
    acknowledged: int
    failed: int
    missing: int
    stored_total: int
    integrity: str


def _check(db_path: Path, acknowledged: list[str]) -> tuple[int, int, str]:
    """Missing acknowledged receipts, receipts stored in all, and the integrity check."""
    with sqlite3.connect(db_path) as db:
        integrity = str(db.execute("PRAGMA integrity_check").fetchone()[0])
        stored = {row[0] for row in db.execute("SELECT id FROM receipts")}
    db.close()
    return len(set(acknowledged) - stored), len(stored), integrity


def one_round(
    index: int, data: Path, logs: Path, stub: StubUpstream, clients: int, kill_after_s: float
) -> Round:
    settings: dict[str, str | bool] = {
        "data_dir": str(data),
        "default_model": "stub",
        "default_router": False,
    }
    models = [{"name": "stub", "base_url": stub.url, "model_id": "stub"}]
    acks = Acks()
    stop = threading.Event()
    with running_gateway(logs, name=f"round-{index}", settings=settings, models=models) as gw:
        threads = [
            threading.Thread(target=_client, args=(gw.url, acks, stop, i), daemon=True)
            for i in range(clients)
        ]
        for t in threads:
            t.start()
        acks.first.wait(60)  # the kill lands while answers flow, not before the first
        time.sleep(kill_after_s)
        stop.set()  # no new requests; those in flight are cut by the kill
        os.kill(gw.child.pid, signal.SIGKILL)
        gw.child.proc.wait(10)  # type: ignore[union-attr]
        for t in threads:
            t.join(15)
    missing, stored, integrity = _check(data / "smallfirst.db", acks.acknowledged)
    return Round(
        index, kill_after_s, acks.sent, len(acks.acknowledged), acks.failed, missing, stored,
        integrity,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = script.parser(__doc__, area="resilience")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--delay-ms", type=float, default=20.0, help="the stub's time to answer")
    p.add_argument(
        "--kill-after-s",
        type=float,
        nargs=2,
        default=(0.0, 1.5),
        metavar=("MIN", "MAX"),
        help="when to kill, after the first acknowledged answer (default 0 to 1.5 s)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run = script.start("crash_loop", "kill -9 under load: receipts and integrity", args)
    rng = random.Random(args.seed)
    rounds: list[Round] = []
    with scratch_dir() as tmp, StubUpstream(delay_s=args.delay_ms / 1000) as stub:
        data = tmp / "data"
        data.mkdir()
        for i in range(args.rounds):
            r = one_round(i, data, tmp, stub, args.clients, rng.uniform(*args.kill_after_s))
            rounds.append(r)
            print(
                f"round {i}: killed at {r.kill_after_s:.2f} s, {r.acknowledged} acknowledged, "
                f"{r.missing} missing, {r.stored_total} stored, integrity {r.integrity}",
                flush=True,
            )
    missing = sum(r.missing for r in rounds)
    bad = [r.index for r in rounds if r.integrity != "ok"]
    acknowledged = sum(r.acknowledged for r in rounds)
    clean = missing == 0 and not bad and acknowledged > 0
    result = {
        "rounds": [asdict(r) for r in rounds],
        "settings": vars(args) | {"out": str(args.out)},
        "acknowledged": acknowledged,
        "missing": missing,
        "integrity_failures": bad,
    }
    rows = [
        ["rounds", str(len(rounds))],
        ["requests sent", str(sum(r.sent for r in rounds))],
        ["acknowledged receipts", str(acknowledged)],
        ["acknowledged but missing after kill -9", str(missing)],
        ["rounds failing integrity_check", str(len(bad))],
        ["receipts stored at the end", str(rounds[-1].stored_total if rounds else 0)],
    ]
    verdict = (
        "PASS: no acknowledged receipt lost, integrity ok every round"
        if clean
        else "FAIL: see rounds"
    )
    run.finish(result, headers=["figure", "value"], rows=rows, verdicts=[verdict])
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
