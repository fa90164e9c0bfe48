"""The store's tests run on both backends: ``db_url`` is a fresh SQLite file or a fresh
database on the throwaway PostgreSQL cluster (``pg_cluster``, in the top conftest).

A cluster that cannot start fails the PostgreSQL half with the reason; it is never skipped.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smallfirst.pg_cluster import Cluster
from smallfirst.store.backend import Backend
from smallfirst.store.database import open_backend

BACKENDS = ("sqlite", "postgresql")
_names = itertools.count()


def fresh_database(cluster: Cluster) -> str:
    """The URL of a new, empty database on ``cluster``: a schema of its own, first on the
    connection's search path (as good as a database to the store, and made in a
    millisecond where CREATE DATABASE takes a few hundred)."""
    import psycopg

    name = f"t{next(_names)}"
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return cluster.url() + f"?options=-csearch_path%3D{name}"


def at_once(n: int, one: Callable[[int], object]) -> list[object]:
    """``one(0)`` ... ``one(n - 1)`` in ``n`` threads released together; their results."""
    start = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        start.wait()
        results[i] = one(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's database is: ``sqlite:PATH`` or ``postgresql://...``."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'smallfirst.db'}"
    return fresh_database(request.getfixturevalue("pg_cluster"))


@pytest.fixture
def backend(db_url: str) -> Iterator[Backend]:
    """The test's database, open (and migrated)."""
    db = open_backend(db_url)
    yield db
    db.close()
