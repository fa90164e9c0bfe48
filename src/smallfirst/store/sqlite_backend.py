"""The SQLite backend: one file in WAL mode, one writer connection behind a lock.

The database lives in the data directory (``smallfirst.db``). A receipt is committed
before the response that carries it completes; with ``synchronous=NORMAL`` a commit
survives the process being killed (``kill -9``), though not necessarily a power cut — set
``store_synchronous = "FULL"`` for that, at the price of an fsync per request.

``PRAGMA user_version`` records how many of :data:`.schema.SQLITE_MIGRATIONS` have run, so
opening an older database brings it up to date and a newer one is refused. Each store
opens its own connection (several connections on one file are what SQLite's locking is
for; ``busy_timeout`` waits out a writer); the dashboard reads through short-lived
``query_only`` connections beside the writer.

This module opens and migrates; the stores own the queries.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from smallfirst.errors import StoreError
from smallfirst.store.backend import Connection, Dialect, rolled_back_on_error
from smallfirst.store.schema import SQLITE_MIGRATIONS

__all__ = ["SqliteBackend", "Synchronous", "connect", "read_version", "reader"]

Synchronous = Literal["OFF", "NORMAL", "FULL"]


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


def connect(path: Path, synchronous: Synchronous = "NORMAL") -> sqlite3.Connection:
    """Open the database (WAL, autocommit, dict rows) and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=5000")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(SQLITE_MIGRATIONS):
        conn.close()
        raise StoreError(
            f"{path} has schema version {version}, newer than this smallfirst "
            f"({len(SQLITE_MIGRATIONS)}); upgrade smallfirst"
        )
    for number, script in enumerate(SQLITE_MIGRATIONS[version:], start=version + 1):
        conn.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
    conn.row_factory = _dict_row
    return conn


@contextlib.contextmanager
def reader(path: Path) -> Iterator[Connection]:
    """A short-lived read-only connection to ``path``, beside the writer (WAL)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = _dict_row
        conn.execute("PRAGMA query_only=1")
        conn.execute("PRAGMA busy_timeout=5000")
        yield conn
    finally:
        conn.close()


def read_version(path: Path) -> int:
    """The schema version of ``path`` without migrating it (0: no such file yet)."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}") from None
    finally:
        conn.close()


class SqliteBackend:
    """One SQLite file; every statement of this backend runs under its lock."""

    greatest = "MAX"
    # one writer at a time (its lock); a few more threads wait on it or read beside it
    max_connections = 4
    bucket = "CAST(created_at / ? AS INTEGER)"  # created_at > 0: truncation is the floor

    def __init__(self, path: Path, synchronous: Synchronous = "NORMAL") -> None:
        self.path = path
        self._conn = connect(path, synchronous)
        self._lock = threading.Lock()

    @property
    def dialect(self) -> Dialect:
        return "sqlite"

    @property
    def url(self) -> str:
        return f"sqlite:{self.path}"

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._lock:
            yield self._conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        # IMMEDIATE: the write lock from the first statement, so a conditional UPDATE's
        # check and its write are one step for every connection on the file
        with self._lock, rolled_back_on_error(self._conn, "BEGIN IMMEDIATE") as conn:
            yield conn

    def reader(self) -> contextlib.AbstractContextManager[Connection]:
        return reader(self.path)

    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()["user_version"])

    def migrations(self) -> int:
        return len(SQLITE_MIGRATIONS)

    def integrity_check(self) -> str:
        with self._lock:
            row = self._conn.execute("PRAGMA integrity_check").fetchone()
        return str(next(iter(row.values())))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
