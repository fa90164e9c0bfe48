"""The receipt store on both backends (SQLite, PostgreSQL): migrations, pagination, filters
and SQL aggregation."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from smallfirst.errors import StoreError
from smallfirst.metering.receipts import Overhead, Receipt
from smallfirst.pg_cluster import Cluster
from smallfirst.store.backend import Backend
from smallfirst.store.database import open_backend
from smallfirst.store.schema import SQLITE_MIGRATIONS as MIGRATIONS
from smallfirst.store.sqlite import SqliteStore
from tests.store.conftest import fresh_database

pytestmark = pytest.mark.fast


def receipt(
    i: int, model: str = "m", energy: float | None = 1.0, method: str = "estimated"
) -> Receipt:
    return Receipt(
        id=f"r{i}",
        created_at=1000.0 + i,
        endpoint="chat",
        model=model,
        tier="XS",
        engine="llama.cpp",
        stream=False,
        status="ok",
        prompt_tokens=10,
        completion_tokens=5,
        duration_s=0.5,
        ttft_s=0.1,
        energy_j=energy,
        energy_method=method,
        energy_scope="s",
        energy_source="x",
        energy_note=None,
        cpu_s=0.2,
        cost_usd=0.001,
        cost_method="e",
        co2_g=0.5,
        grid_g_per_kwh=475,
        pue=1.0,
        carbon_source="w",
        baseline_model="big",
        baseline_energy_j=4.0,
        baseline_cost_usd=0.004,
        baseline_co2_g=2.0,
        baseline_source="p",
        saved_energy_j=None if energy is None else 4.0 - energy,
        saved_cost_usd=0.003,
        saved_co2_g=1.5,
    )


def test_round_trip_and_schema_version(db_url: str) -> None:
    store = SqliteStore(open_backend(db_url))
    assert store.schema_version == store.backend.migrations() > 0
    store.add(receipt(1))
    assert store.get("r1") == receipt(1)
    assert store.get("nope") is None
    assert store.integrity_check() == "ok"
    store.backend.close()
    again = SqliteStore(open_backend(db_url))  # reopening runs no migration twice
    assert again.get("r1") == receipt(1)
    assert again.schema_version == again.backend.migrations()
    again.backend.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(path)


def test_newer_schema_is_refused_on_postgresql(pg_cluster: Cluster) -> None:
    import psycopg

    url = fresh_database(pg_cluster)
    open_backend(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (999,))
    with pytest.raises(StoreError, match="newer"):
        open_backend(url)


def test_pages_filters_and_summary(backend: Backend) -> None:
    store = SqliteStore(backend)
    store.add_many([receipt(i, model="a" if i % 2 else "b") for i in range(25)])
    store.add(receipt(99, model="a", energy=None, method="unknown"))
    seen, cursor = [], None
    while True:
        page = store.list(limit=10, cursor=cursor)
        seen += [r.id for r in page.receipts]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 26 == len(set(seen)) and seen[0] == "r99"
    assert all(r.model == "a" for r in store.list(model="a", limit=100).receipts)
    assert [r.id for r in store.list(since=1020, until=1022).receipts] == ["r21", "r20"]
    s = store.summary()
    assert s["total"]["requests"] == 26 and s["total"]["energy_j"] == pytest.approx(25.0)
    assert s["total"]["energy_unknown"] == 1 and s["total"]["energy_estimated_j"] == 25.0
    # baseline sums only where a saving is known, so the percentage compares like with like
    assert s["total"]["baseline_energy_j"] == pytest.approx(100.0)
    assert s["total"]["saved_energy_pct"] == pytest.approx(75.0)
    by_model = {m["model"]: m for m in s["models"]}
    assert by_model["a"]["requests"] == 13 and by_model["b"]["requests"] == 13
    assert store.summary(model="b")["total"]["requests"] == 13


def test_overhead_is_summed_apart_from_the_receipts(backend: Backend) -> None:
    store = SqliteStore(backend)
    store.add(receipt(1))
    assert store.summary()["overhead"]["total"]["count"] == 0
    for at, model in ((1000.0, "m"), (1002.0, "m"), (1003.0, "n")):
        store.add_overhead(Overhead(at, "model_load", model, 0.5, 2.0, "estimated", 0.4, 1e-6, 0.3))
    summary = store.summary()
    assert summary["total"]["energy_j"] == 1.0  # the receipt's alone
    overhead = summary["overhead"]
    assert overhead["total"]["count"] == 3 and overhead["total"]["energy_j"] == 6.0
    assert [(i["model"], i["count"]) for i in overhead["items"]] == [("m", 2), ("n", 1)]
    # the receipts' filters apply to it too
    assert store.summary(since=1001.0)["overhead"]["total"]["count"] == 2
    assert store.summary(model="n")["overhead"]["items"][0]["energy_j"] == 2.0


def test_receipt_row_is_every_column() -> None:
    r = receipt(1)
    assert list(r.row()) == Receipt.columns() and r.row()["id"] == "r1"
