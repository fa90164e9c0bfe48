"""PostgreSQL as the gateway's store: replicas sharing one budget exactly, and a database
that cannot be reached at start, named (password masked) instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from smallfirst.errors import StoreUnavailableError
from smallfirst.pg_cluster import Cluster
from smallfirst.store.database import open_backend
from smallfirst.store.keys import KeySpec
from smallfirst.stub_upstream import StubUpstream
from smallfirst.testing import LiveServer, free_port
from tests.server.test_access import MSG, race, stub_settings, worst_usd
from tests.store.conftest import fresh_database

pytestmark = pytest.mark.fast


def test_three_gateways_on_one_postgresql_share_one_budget_exactly(
    tmp_path: Path, pg_cluster: Cluster
) -> None:
    # LiteLLM's per-pod counters (#23714, #33325): replicas each spent up to the cap. Three
    # gateways here, each with its own pool on one database, 60 clients over them at once.
    k, max_tokens, clients = 7, 5, 60
    url = fresh_database(pg_cluster)
    with StubUpstream() as stub:
        # one data directory's server secret (keys.secret) for all: a key's hash is checked
        # under it, so replicas share that file as they share the database
        settings = stub_settings(tmp_path, stub, database_url=url)
        with LiveServer(settings) as a, LiveServer(settings) as b, LiveServer(settings) as c:
            # made on one replica, known to the others: the keys live in the database
            key, secret = a.app.state.keys.create(
                KeySpec(name="replicated", budget_usd=k * worst_usd(max_tokens))
            )
            stub.delay_s = 1.5  # every client has reserved or been refused before any settles
            try:
                body = {"model": "stub", "messages": MSG, "max_tokens": max_tokens}
                statuses = race([a.url, b.url, c.url], secret, clients, body)
            finally:
                stub.delay_s = 0.0
            assert statuses.count(200) == k and statuses.count(429) == clients - k
            after = c.app.state.keys.get(key.id)
            receipts = b.app.state.store.list(key_id=key.id, limit=100).receipts
            assert len(receipts) == k and after.reserved.usd == pytest.approx(0.0, abs=1e-15)
            assert after.spent.usd == pytest.approx(sum(r.cost_usd or 0 for r in receipts))
            assert after.spent.usd <= k * worst_usd(max_tokens)
            assert a.app.state.store.summary()["total"]["requests"] == k
            # the read side on PostgreSQL too: the receipts API and the dashboard's queries
            _, admin = a.app.state.keys.create(KeySpec(name="admin", admin=True))
            auth = {"authorization": f"Bearer {admin}"}
            listed = httpx.get(f"{c.url}/smallfirst/v1/receipts", headers=auth).json()
            assert {r["receipt_id"] for r in listed["data"]} == {r.id for r in receipts}
            series = httpx.get(f"{b.url}/smallfirst/v1/dashboard/timeseries", headers=auth)
            assert sum(p["requests"] for p in series.json()["data"]) == k
            frontier = httpx.get(f"{a.url}/smallfirst/v1/dashboard/frontier", headers=auth)
            assert frontier.status_code == 200, frontier.text


def test_an_unreachable_database_is_named_with_its_password_masked() -> None:
    url = f"postgresql://smallfirst:hunter2@127.0.0.1:{free_port()}/smallfirst"
    with pytest.raises(StoreUnavailableError) as refused:
        open_backend(url)
    message = refused.value.message
    assert "cannot reach PostgreSQL" in message and "hunter2" not in message
    assert f"postgresql://smallfirst:***@127.0.0.1:{url.split(':')[3].split('/')[0]}" in message


def test_serve_exits_with_that_message_when_the_database_is_down(tmp_path: Path) -> None:
    url = f"postgresql://smallfirst:hunter2@127.0.0.1:{free_port()}/smallfirst"
    env = {
        **os.environ,
        "SMALLFIRST_DATA_DIR": str(tmp_path),
        "SMALLFIRST_DATABASE_URL": url,
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "smallfirst.cli", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "cannot reach PostgreSQL at postgresql://smallfirst:***@127.0.0.1" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_two_gateways_on_one_postgresql_share_a_keys_rate_limit(
    tmp_path: Path, pg_cluster: Cluster
) -> None:
    # per-process windows would let each replica allow the full rate; these allow it once
    url = fresh_database(pg_cluster)
    with StubUpstream() as stub:
        settings = stub_settings(tmp_path, stub, database_url=url)
        with LiveServer(settings) as a, LiveServer(settings) as b:
            _, secret = a.app.state.keys.create(KeySpec(name="limited", rpm=5))
            body = {"model": "stub", "messages": MSG, "max_tokens": 4}
            auth = {"authorization": f"Bearer {secret}"}
            answers = [
                httpx.post(f"{(a, b)[i % 2].url}/v1/chat/completions", json=body, headers=auth)
                for i in range(8)
            ]
            assert [r.status_code for r in answers] == [200] * 5 + [429] * 3
            remaining = [int(r.headers["x-ratelimit-remaining-requests"]) for r in answers[:5]]
            assert remaining == [4, 3, 2, 1, 0]  # counted across both replicas
            refused = answers[5].json()["error"]
            assert (
                refused["code"] == "rate_limit_exceeded"
                and "5 requests per minute" in (refused["message"])
            )
            assert 50 <= int(answers[5].headers["retry-after"]) <= 60
