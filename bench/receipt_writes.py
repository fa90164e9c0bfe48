"""Receipt writes: SQLite against PostgreSQL on the same machine, in the same run.

The gateway stores one receipt per request before the response completes
(``ReceiptStore.add``, one INSERT committed on its own). This script times exactly that call
on three stores side by side:

- ``sqlite``: the default, a file in a temporary data directory, WAL with
  ``synchronous=NORMAL`` (``store_synchronous``'s default: a commit survives a killed
  process, not necessarily a power cut);
- ``sqlite-full``: the same with ``synchronous=FULL`` (fsync on every commit);
- ``postgresql``: a throwaway cluster (``smallfirst.pg_cluster``, the tests' cluster) run
  with PostgreSQL's defaults, ``fsync=on`` and ``synchronous_commit=on``, reached over
  loopback TCP through the store's pool of 8 connections.

Each round writes ``--n`` receipts one after another (latency of each write, and writes/s),
then ``--threads`` writers at once, ``--n`` writes in all (writes/s together, p99 of each
write): SQLite serialises writers on its one write lock, PostgreSQL's pool takes 8 at once.
The rounds rotate the stores' order so that the machine's noise falls on all of them. The
figures are for this machine's disk and 2 shared cores; the ratio is what travels.

    PYTHONPATH=src:bench .venv/bin/python bench/receipt_writes.py [--quick] [--rounds 5]
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dashboard_endpoints import plausible_receipt
from harness import script
from harness.procs import scratch_dir
from harness.stats import fmt, summarize
from smallfirst.pg_cluster import Cluster
from smallfirst.store.sqlite import SqliteStore

STORES = ("sqlite", "sqlite-full", "postgresql")


def parse_args(argv: Sequence[str] | None) -> Any:
    p = script.parser(__doc__, area="store", quick="fewer writes and rounds")
    p.add_argument("--n", type=int, help="writes per store per round and mode (500; quick 100)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (5; quick 2)")
    p.add_argument("--threads", type=int, default=8, help="concurrent writers (8)")
    args = p.parse_args(argv)
    args.n = args.n or (100 if args.quick else 500)
    args.rounds = args.rounds or (2 if args.quick else 5)
    return args


@contextlib.contextmanager
def stores(tmp: Path) -> Iterator[dict[str, SqliteStore]]:
    with Cluster(fsync=True) as cluster:
        opened = {
            "sqlite": SqliteStore(tmp / "normal.db", synchronous="NORMAL"),
            "sqlite-full": SqliteStore(tmp / "full.db", synchronous="FULL"),
            "postgresql": SqliteStore(cluster.url()),
        }
        try:
            yield opened
        finally:
            for store in opened.values():
                store.close()


class Ids:
    """Receipt ids unique across every store, round and thread."""

    def __init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()
        self._rng = random.Random(18)

    def receipt(self) -> Any:
        with self._lock:
            self._next += 1
            i = self._next
            return plausible_receipt(self._rng, i, time.time())


def timed_writes(store: SqliteStore, ids: Ids, n: int) -> list[float]:
    """``n`` writes, one after another; the milliseconds each took."""
    out = []
    for _ in range(n):
        receipt = ids.receipt()  # built before the clock: only the write is timed
        t0 = time.perf_counter()
        store.add(receipt)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def together(store: SqliteStore, ids: Ids, n: int, threads: int) -> tuple[float, list[float]]:
    """``n`` writes over ``threads`` writers released at once; (wall seconds, ms of each)."""
    each = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    start = threading.Barrier(threads + 1)
    times: list[list[float]] = [[] for _ in range(threads)]

    def writer(i: int) -> None:
        start.wait()
        times[i] = timed_writes(store, ids, each[i])

    pool = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    return time.perf_counter() - t0, [ms for part in times for ms in part]


def rotate(names: Sequence[str], r: int) -> list[str]:
    return [names[(i + r) % len(names)] for i in range(len(names))]


def run_rounds(opened: dict[str, SqliteStore], args: Any) -> dict[str, dict[str, Any]]:
    ids = Ids()
    figures: dict[str, dict[str, Any]] = {
        name: {"serial_ms": [], "together_ms": [], "together_wall_s": 0.0, "together_n": 0}
        for name in STORES
    }
    for name in STORES:  # warm-up: connections open, tables' first pages cached
        timed_writes(opened[name], ids, 20)
    for r in range(args.rounds):
        for name in rotate(STORES, r):
            f = figures[name]
            f["serial_ms"] += timed_writes(opened[name], ids, args.n)
            wall, each = together(opened[name], ids, args.n, args.threads)
            f["together_ms"] += each
            f["together_wall_s"] += wall
            f["together_n"] += len(each)
        print(f"  round {r + 1}/{args.rounds} done", flush=True)
    return figures


def summary(figures: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, f in figures.items():
        serial = summarize(f["serial_ms"], unit="ms", quantiles=(50, 99), digits=4)
        both = summarize(f["together_ms"], unit="ms", quantiles=(50, 99), digits=4)
        out[name] = {
            "serial": serial | {"writes_per_s": round(1000 / serial["mean_ms"], 1)},
            "together": both | {"writes_per_s": round(f["together_n"] / f["together_wall_s"], 1)},
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run = script.start("receipt_writes", "Receipt writes: SQLite against PostgreSQL", args)
    with scratch_dir() as tmp, stores(tmp) as opened:
        figures = run_rounds(opened, args)
    result = summary(figures)
    rows = [
        [
            name,
            fmt(s["serial"]["writes_per_s"], 0),
            fmt(s["serial"]["p50_ms"]),
            fmt(s["serial"]["p99_ms"]),
            fmt(s["together"]["writes_per_s"], 0),
            fmt(s["together"]["p99_ms"]),
        ]
        for name, s in result.items()
    ]
    pg, lite = result["postgresql"]["serial"], result["sqlite"]["serial"]
    notes = [
        f"{args.rounds} rounds, stores rotated each round; {args.n} serial writes and {args.n} "
        f"writes over {args.threads} threads per store per round",
        "postgresql: fsync=on, synchronous_commit=on (PostgreSQL's defaults), loopback TCP, "
        "the store's pool of 8; sqlite: WAL, synchronous NORMAL (the default) or FULL",
        f"serial p50: postgresql {pg['p50_ms']:.3f} ms against sqlite {lite['p50_ms']:.3f} ms "
        f"({pg['p50_ms'] / lite['p50_ms']:.1f}x)",
    ]
    run.finish(
        {"args": vars(args) | {"out": str(args.out)}, "stores": result},
        headers=[
            "store",
            "serial writes/s",
            "p50 ms",
            "p99 ms",
            f"{args.threads} threads writes/s",
            f"{args.threads} threads p99 ms",
        ],
        rows=rows,
        notes=notes,
        echo_notes=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
