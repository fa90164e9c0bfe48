"""Three gateway replicas as separate processes on one PostgreSQL, behind no load balancer
(the clients spread their requests round-robin): one key's budget is exact across them,
and ``kill -9`` of one mid-load loses no acknowledged receipt and leaks no reservation.

Not in the fast lane: three ``smallfirst serve`` processes start, and a lease runs out.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from smallfirst.pg_cluster import Cluster
from smallfirst.replicas import Replicas, write_config
from smallfirst.store.keys import KeySpec, KeyStore
from smallfirst.store.sqlite import SqliteStore
from smallfirst.stub_upstream import StubUpstream
from tests.server.test_access import IN_USD, J_IN, J_OUT, MSG, OUT_USD, race, worst_usd
from tests.store.conftest import fresh_database

LEASE_S = 5.0  # above the longest request here (2 s), short enough to wait out
MAX_TOKENS = 5
BODY: dict[str, Any] = {"model": "stub", "messages": MSG, "max_tokens": MAX_TOKENS}


@pytest.fixture(scope="module")
def stub() -> Iterator[StubUpstream]:
    with StubUpstream() as up:
        yield up


@dataclass
class Three:
    replicas: Replicas
    keys: KeyStore  # the test's own view of the shared database
    receipts: SqliteStore


@pytest.fixture
def three(tmp_path: Path, pg_cluster: Cluster, stub: StubUpstream) -> Iterator[Three]:
    """Three ``smallfirst serve`` processes: one database, one data directory (its
    ``keys.secret``), the stub as their only model."""
    url = fresh_database(pg_cluster)
    data = tmp_path / "data"
    settings = {
        "data_dir": str(data),
        "database_url": url,
        "default_model": "stub",
        "default_router": False,
        "reference_model": "stub",
        "response_cache": False,  # every request reaches the stub and spends
        "access_reservation_ttl_s": LEASE_S,
        "log_level": "warning",
    }
    model = {"name": "stub", "base_url": stub.url, "model_id": "stub"}
    model |= {"price_input_per_mtok_usd": IN_USD, "price_output_per_mtok_usd": OUT_USD}
    profile = {"j_per_input_token": J_IN, "j_per_output_token": J_OUT}
    config = write_config(tmp_path / "replica.toml", settings, [model], {"stub": profile})
    keys, receipts = KeyStore(url, data), SqliteStore(url)
    try:
        with Replicas(3, config, tmp_path) as replicas:
            yield Three(replicas, keys, receipts)
    finally:
        keys.close()
        receipts.close()


def test_a_hundred_clients_over_three_replica_processes_spend_a_budget_exactly(
    three: Three, stub: StubUpstream
) -> None:
    k, clients = 9, 100
    keys, receipts = three.keys, three.receipts
    key, secret = keys.create(KeySpec(name="exact", budget_usd=k * worst_usd(MAX_TOKENS)))
    stub.delay_s = 2.0  # every client has reserved or been refused before any settles
    try:
        statuses = race(three.replicas.urls, secret, clients, BODY)
    finally:
        stub.delay_s = 0.0
    assert statuses.count(200) == k and statuses.count(429) == clients - k
    after = keys.get(key.id)
    stored = receipts.list(key_id=key.id, limit=200).receipts
    costs = {r.cost_usd for r in stored}
    assert len(stored) == k and len(costs) == 1  # one price for one shape of request
    assert after.spent.usd == pytest.approx(k * costs.pop())
    assert after.spent.usd <= after.budget.usd  # overspend 0
    assert after.reserved.usd == pytest.approx(0.0, abs=1e-15)


def _post_all(urls: list[str], secret: str, n: int) -> list[httpx.Response | Exception]:
    """``n`` clients at once, client ``i`` on ``urls[i % len(urls)]``."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    auth = {"authorization": f"Bearer {secret}"}
    with httpx.Client(headers=auth, limits=limits, timeout=60) as http:

        def one(i: int) -> httpx.Response | Exception:
            try:
                return http.post(urls[i % len(urls)] + "/v1/chat/completions", json=BODY)
            except httpx.HTTPError as exc:  # the killed replica's clients
                return exc

        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            return list(pool.map(one, range(n)))


def test_kill_9_of_one_replica_mid_load_loses_no_receipt_and_leaks_no_reservation(
    three: Three, stub: StubUpstream
) -> None:
    clients = 60
    keys, receipts, replicas = three.keys, three.receipts, three.replicas
    key, secret = keys.create(KeySpec(name="kill", budget_usd=1.0))
    before = stub.requests
    stub.delay_s = 1.0  # reservations open on every replica when one dies
    answers: list[httpx.Response | Exception] = []
    wave = threading.Thread(
        target=lambda: answers.extend(_post_all(replicas.urls, secret, clients))
    )
    wave.start()
    deadline = time.monotonic() + 30
    while stub.requests - before < clients and time.monotonic() < deadline:  # all reserved
        time.sleep(0.01)
    replicas.kill(0)
    wave.join()
    stub.delay_s = 0.0
    # the two live replicas answered all theirs; the dead one's clients got no answer
    live = [a for i, a in enumerate(answers) if i % 3 != 0]
    assert all(isinstance(a, httpx.Response) and a.status_code == 200 for a in live), live
    ok = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 200]
    # every answer a client received has its receipt in the database, on its key
    for answer in ok:
        receipt = receipts.get(answer.headers["x-smallfirst-receipt-id"])
        assert receipt is not None and receipt.key_id == key.id
    dead_in_flight = len(answers) - len(ok)
    assert dead_in_flight > 0 and _leases(receipts, key.id) == dead_in_flight  # still leased
    # a live replica gives them back once the lease runs out, with no new request on the key
    deadline = time.monotonic() + LEASE_S + 10
    while _leases(receipts, key.id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _leases(receipts, key.id) == 0
    after = keys.get(key.id)
    assert after.reserved.usd == pytest.approx(0.0, abs=1e-15)  # sums of floats
    assert after.spent.usd == pytest.approx(sum(r.cost_usd or 0 for r in _of(receipts, key.id)))
    # and the two left go on answering
    auth = {"authorization": f"Bearer {secret}"}
    for url in replicas.urls[1:]:
        assert httpx.post(url + "/v1/chat/completions", json=BODY, headers=auth).status_code == 200


def _of(receipts: SqliteStore, key_id: str) -> list[Any]:
    return list(receipts.list(key_id=key_id, limit=500).receipts)


def _leases(receipts: SqliteStore, key_id: str) -> int:
    """The key's open reservations (leases) in the database."""
    with receipts.backend.connection() as conn:
        sql = "SELECT COUNT(*) AS n FROM reservations WHERE key_id = ?"
        return int(conn.execute(sql, (key_id,)).fetchone()["n"])
