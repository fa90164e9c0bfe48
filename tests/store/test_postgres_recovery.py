"""PostgreSQL under a running gateway: lost, a request that cannot reach its budget is a
503 before any model runs, and the gateway serves again once the database is back, by
itself; and the leases a dead replica left open are given back by a live one. Not in the
fast lane: these wait out the pool's timeout and a lease."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pytest

from smallfirst.pg_cluster import Cluster
from smallfirst.store.budgets import Amounts
from smallfirst.store.keys import ApiKey, KeySpec, KeyStore
from smallfirst.store.postgres import POOL_TIMEOUT_S
from smallfirst.stub_upstream import StubUpstream
from smallfirst.testing import LiveServer
from tests.server.test_access import MSG, stub_settings
from tests.store.conftest import fresh_database


def _served_again(
    cluster: Cluster,
    post: Callable[[], httpx.Response],
    gateway: LiveServer,
    stub: StubUpstream,
    calls: int,
) -> None:
    """Restart ``cluster``; the gateway answers again by itself, and since the loss the stub
    saw that one request only, with the two answered ones' receipts stored."""
    cluster.run()
    deadline = time.monotonic() + 30
    while (up := post()).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert up.status_code == 200, up.text
    assert len(stub.calls) == calls + 1  # the refused requests ran no model
    assert gateway.app.state.store.summary()["total"]["requests"] == 2


def test_a_database_lost_mid_run_is_a_503_and_the_gateway_recovers_by_itself(
    tmp_path: Path,
) -> None:
    # its own cluster: this one is stopped and started again under the gateway
    with Cluster() as own, StubUpstream() as stub:
        settings = stub_settings(tmp_path, stub, database_url=own.url())
        with LiveServer(settings) as gateway:
            _, secret = gateway.app.state.keys.create(KeySpec(name="k", budget_usd=1.0))
            body = {"model": "stub", "messages": MSG, "max_tokens": 4}
            post = partial(httpx.post, gateway.url + "/v1/chat/completions", json=body,
                           headers={"authorization": f"Bearer {secret}"}, timeout=30)  # fmt: skip
            assert post().status_code == 200
            own.halt()
            down = post()
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "store_unavailable"
            assert "PostgreSQL" in down.json()["error"]["message"]
            calls = len(stub.calls)
            _served_again(own, post, gateway, stub, calls)


def test_open_mode_on_a_lost_database_is_a_503_before_any_model_runs(tmp_path: Path) -> None:
    # no key exists: nothing to reserve, yet an answer whose receipt cannot be stored must
    # not go out; the store is asked before the model (auth's keys.any()), so 503 first
    with Cluster() as own, StubUpstream() as stub:
        ttl = {"access_reservation_ttl_s": 1.0}  # the lease reclaimer runs every second
        settings = stub_settings(tmp_path, stub, database_url=own.url(), **ttl)
        with LiveServer(settings) as gateway:
            body = {"model": "stub", "messages": MSG, "max_tokens": 4}
            post = partial(httpx.post, gateway.url + "/v1/chat/completions", json=body, timeout=30)
            assert post().status_code == 200
            own.halt()
            calls = len(stub.calls)
            embed = {"model": "stub", "input": "x"}
            for answer in (post(), post(), httpx.post(gateway.url + "/v1/embeddings", json=embed)):
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"]["code"] == "store_unavailable"
            # known lost, a request waits LOST_TIMEOUT_S for a connection, not POOL_TIMEOUT_S
            started = time.monotonic()
            assert post().status_code == 503
            assert time.monotonic() - started < POOL_TIMEOUT_S / 2
            assert len(stub.calls) == calls  # no model ran for any of them
            _served_again(own, post, gateway, stub, calls)
            # the lease reclaimer met the outage with no key yet (any() raised) and lives on
            key, _ = gateway.app.state.keys.create(KeySpec(name="k", budget_usd=1.0))
            _dead_replica_reserves(own.url(), tmp_path, key)
            _given_back(gateway.app.state.keys, "k")


def test_a_live_gateway_gives_back_the_leases_a_dead_replica_left(
    tmp_path: Path, pg_cluster: Cluster
) -> None:
    # the dead replica: a store that reserved with a one-second lease and never settled
    url = fresh_database(pg_cluster)
    with StubUpstream() as stub:
        settings = stub_settings(tmp_path, stub, database_url=url, access_reservation_ttl_s=1.0)
        with LiveServer(settings) as live:
            keys = live.app.state.keys
            key, _ = keys.create(KeySpec(name="k", budget_usd=1.0))
            _dead_replica_reserves(url, tmp_path, key)
            _given_back(keys, "k")


def _dead_replica_reserves(url: str, data: Path, key: ApiKey) -> None:
    """A store that reserves 0.4 USD of ``key`` with a one-second lease and never settles."""
    dead = KeyStore(url, data)
    dead.budgets.reserve(key, Amounts(0.4, 0.0, 0.0), ttl_s=1.0)
    dead.close()


def _given_back(keys: KeyStore, name: str) -> None:
    """The live gateway gives the dead lease back, with no new request on the key."""
    assert keys.get(name).reserved.usd == pytest.approx(0.4)
    deadline = time.monotonic() + 10  # lease 1 s, then a round every 1 s
    while keys.get(name).reserved.usd > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert keys.get(name).reserved.usd == 0.0
    assert keys.get(name).spent.usd == 0.0
