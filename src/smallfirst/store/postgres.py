"""The PostgreSQL backend: psycopg 3 with its connection pool, migrations under a lock.

Chosen by ``database_url = "postgresql://..."``. Opening it first connects once, directly,
so that a database that cannot be reached is a :class:`StoreUnavailableError` naming the
URL (password masked) and psycopg's reason, at start, rather than a pool that waits; that
same connection runs the migrations, inside one transaction holding an advisory lock, so
several gateways started together against one empty database migrate it once.

The pool is psycopg's synchronous ``ConnectionPool``: the stores are synchronous, one code
path for both backends, and each statement is one short round trip on loopback or a LAN;
the server awaits them on worker threads, at most :attr:`PostgresBackend.max_connections`
at once (:mod:`smallfirst.server.offload`). While the database is lost (the last checkout
failed) a checkout waits :data:`LOST_TIMEOUT_S` rather than :data:`POOL_TIMEOUT_S`, so a
gateway whose database is down answers each request's 503 quickly instead of holding a
worker thread, and the requests queued behind it, for seconds each. Connections are in
autocommit; a transaction is explicit (:meth:`PostgresBackend.transaction`). READ
COMMITTED is enough for the budgets because each reservation is one conditional ``UPDATE``
(PostgreSQL re-checks its ``WHERE`` on the newest row version after waiting for the row's
lock).

psycopg is imported when a PostgreSQL backend is opened, never by a gateway on SQLite.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

from smallfirst.errors import StoreError, StoreUnavailableError
from smallfirst.store.backend import (
    Connection,
    Cursor,
    Dialect,
    Params,
    bools_as_ints,
    mask_url,
    to_pyformat,
)
from smallfirst.store.schema import POSTGRES_MIGRATIONS

__all__ = ["PostgresBackend", "read_version"]

CONNECT_TIMEOUT_S = 5
# how long a request waits for a pooled connection before it is a 503 (store_unavailable)
POOL_TIMEOUT_S = 5.0
# the same wait while the database is known to be lost (the last checkout failed): calls
# queue for the server's few store threads, so each that waits delays those behind it;
# a lost database answers 503 within this, and the first success restores the full wait
LOST_TIMEOUT_S = 0.5
_LOCK_ID = 0x5F5F_534D_414C  # pg_advisory_xact_lock's key for smallfirst's migrations


@functools.lru_cache(maxsize=512)  # the stores' SQL is a fixed set of strings, not input
def _sql(text: str) -> str:
    return to_pyformat(text)


class _Conn:
    """A psycopg connection that takes the stores' SQLite-style SQL."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        # params always given, even empty: to_pyformat's %% is read back only then
        cursor: Cursor = self._conn.execute(_sql(sql), bools_as_ints(params))
        return cursor

    def executemany(self, sql: str, params: Sequence[Params]) -> Any:
        with self._conn.cursor() as cur:
            cur.executemany(_sql(sql), [bools_as_ints(p) for p in params])


def _connect(url: str) -> Any:
    """One direct connection; :class:`StoreUnavailableError` naming the masked URL if not."""
    import psycopg

    try:
        return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnavailableError(
            f"cannot reach PostgreSQL at {mask_url(url)}: {reason}"
        ) from None


def read_version(url: str) -> int:
    """The schema version of the database at ``url`` without migrating it (0: none yet)."""
    with _connect(url) as conn:
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
            return 0
        return int(
            conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
        )


class PostgresBackend:
    """One PostgreSQL database through a pool of connections."""

    greatest = "GREATEST"
    bucket = "CAST(FLOOR(created_at / ?) AS BIGINT)"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8) -> None:
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool, PoolTimeout

        self._url = url
        self.max_connections = max_size
        with _connect(url) as first:
            self._migrate(first)
        # a connection is checked before each use, so one the server dropped (a restart)
        # is replaced instead of failing a request: the pool recovers by itself
        self._pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            check=ConnectionPool.check_connection,
            timeout=POOL_TIMEOUT_S,
            reconnect_timeout=0,  # keep trying in the background for as long as it takes
            open=True,
            name="smallfirst",
        )
        self._lost_errors: tuple[type[Exception], ...] = (psycopg.OperationalError, PoolTimeout)
        # one flag, not a history: set by a failed checkout, cleared by the next success
        self._down = False

    @property
    def dialect(self) -> Dialect:
        return "postgresql"

    @property
    def url(self) -> str:
        return mask_url(self._url)

    @staticmethod
    def _migrate(conn: Any) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            version = int(row.fetchone()[0])
            if version > len(POSTGRES_MIGRATIONS):
                raise StoreError(
                    f"the database has schema version {version}, newer than this smallfirst "
                    f"({len(POSTGRES_MIGRATIONS)}); upgrade smallfirst"
                )
            for number, script in enumerate(POSTGRES_MIGRATIONS[version:], start=version + 1):
                conn.execute(script)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))

    @contextlib.contextmanager
    def _lost(self) -> Iterator[None]:
        """The database gone mid-run: a StoreUnavailableError (503), never a bare 500."""
        try:
            yield
        except self._lost_errors as exc:
            self._down = True
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailableError(f"lost PostgreSQL at {self.url}: {reason}") from exc
        self._down = False

    def _checkout(self) -> contextlib.AbstractContextManager[Any]:
        return self._pool.connection(timeout=LOST_TIMEOUT_S if self._down else POOL_TIMEOUT_S)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._lost(), self._checkout() as conn:
            yield _Conn(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._lost(), self._checkout() as conn, conn.transaction():
            yield _Conn(conn)

    @contextlib.contextmanager
    def reader(self) -> Iterator[Connection]:
        # READ ONLY: the dashboard cannot write by mistake, as SQLite's query_only
        with self._lost(), self._checkout() as conn, conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            yield _Conn(conn)

    def schema_version(self) -> int:
        with self.connection() as conn:
            row = conn.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
            return int(row.fetchone()["v"])

    def migrations(self) -> int:
        return len(POSTGRES_MIGRATIONS)

    def integrity_check(self) -> str:
        """PostgreSQL checks its own pages; this says whether the schema answers."""
        with self.connection() as conn:
            conn.execute("SELECT COUNT(*) FROM receipts").fetchone()
        return "ok"

    def close(self) -> None:
        self._pool.close()
