"""The store is awaited off the event loop: a request stuck in the database stalls no other.

A real gateway on loopback, a stub upstream, each backend for real. Another connection
holds a lock the stuck request's budget reservation needs (SQLite: the database's write
lock; PostgreSQL: the key's row); while it waits, the gateway must go on answering. When
the store was called on the event loop, the wait (up to SQLite's busy timeout, or for as
long as the row lock is held) stalled every request and every stream of the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smallfirst.pg_cluster import Cluster
from smallfirst.server.offload import Offload
from smallfirst.store.keys import KeySpec
from smallfirst.stub_upstream import StubUpstream
from smallfirst.testing import LiveServer
from tests.server.test_access import MSG, stub_settings
from tests.store.conftest import fresh_database

HOLD_S = 2.0  # how long the lock is held: under SQLite's busy timeout (5 s)
QUICK_S = 0.5  # what "answered at once" allows on a busy 2-core machine


@contextlib.contextmanager
def _locked(gateway: LiveServer, url: str | None, key_id: str) -> Iterator[None]:
    """Hold, from another connection, what a reservation on ``key_id`` must wait for."""
    if url is None:  # SQLite: the write lock of the whole file
        conn = sqlite3.connect(gateway.settings.db_path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg, pg.transaction():
        pg.execute("SELECT id FROM keys WHERE id = %s FOR UPDATE", (key_id,))
        yield


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_request_waiting_on_the_database_stalls_no_other(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = None
    extra: dict[str, Any] = {}
    if backend == "postgresql":
        cluster: Cluster = request.getfixturevalue("pg_cluster")
        url = extra["database_url"] = fresh_database(cluster)
    with StubUpstream() as stub, LiveServer(stub_settings(tmp_path, stub, **extra)) as gateway:
        keys = gateway.app.state.keys
        stuck, stuck_secret = keys.create(KeySpec(name="stuck", budget_usd=1.0))
        _, other_secret = keys.create(KeySpec(name="other"))
        body = {"model": "stub", "messages": MSG, "max_tokens": 4}
        outcome: dict[str, Any] = {}

        def post_stuck() -> None:
            started = time.monotonic()
            outcome["response"] = httpx.post(
                gateway.url + "/v1/chat/completions", json=body, timeout=30,
                headers={"authorization": f"Bearer {stuck_secret}"},
            )  # fmt: skip
            outcome["duration_s"] = time.monotonic() - started

        with _locked(gateway, url, stuck.id):
            waiting = threading.Thread(target=post_stuck)
            waiting.start()
            time.sleep(0.5)  # it has reached the lock and waits on it
            assert waiting.is_alive()
            started = time.monotonic()
            health = httpx.get(gateway.url + "/health", timeout=30)
            health_s = time.monotonic() - started
            assert health.status_code == 200
            assert health_s < QUICK_S, f"/health took {health_s:.2f} s behind a stuck request"
            if url is not None:  # PostgreSQL: another key's request runs to its receipt
                started = time.monotonic()
                other = httpx.post(
                    gateway.url + "/v1/chat/completions", json=body, timeout=30,
                    headers={"authorization": f"Bearer {other_secret}"},
                )  # fmt: skip
                assert other.status_code == 200, other.text
                assert time.monotonic() - started < QUICK_S * 2
            time.sleep(HOLD_S - 0.5)
        waiting.join(30)
        # the stuck request waited for the lock, then was served and billed as usual
        assert outcome["response"].status_code == 200, outcome["response"].text
        assert outcome["duration_s"] >= HOLD_S * 0.9
        assert keys.get(stuck.id).spent.usd > 0


@pytest.mark.fast
def test_offload_returns_results_and_raises_errors_across_the_thread() -> None:
    offload = Offload(2)
    running = 0
    most = 0
    lock = threading.Lock()

    def work(i: int, *, pause_s: float) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(pause_s)
        with lock:
            running -= 1
        if i < 0:
            raise ValueError("negative")
        return i * 2

    async def main() -> list[int]:
        with pytest.raises(ValueError, match="negative"):
            await offload(work, -1, pause_s=0.0)
        return list(await asyncio.gather(*(offload(work, i, pause_s=0.05) for i in range(6))))

    assert asyncio.run(main()) == [0, 2, 4, 6, 8, 10]
    assert most == 2  # never more threads at once than it was given
    with pytest.raises(ValueError):
        Offload(0)
