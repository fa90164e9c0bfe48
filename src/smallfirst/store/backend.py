"""The seam between the stores and their database: SQLite or PostgreSQL behind one contract.

A :class:`Backend` hands out connections whose ``execute`` takes SQL written once, in
SQLite's parameter style (``?`` and ``:name``); the PostgreSQL backend rewrites it to
psycopg's (``%s`` and ``%(name)s``) and passes booleans as integers, so the receipts, keys,
budgets, evaluation results and dashboard queries are the same text on both. Rows come back
as plain dicts on both. What differs between the two SQL dialects is named here, as a few
attributes (``greatest``, ``bucket``), not scattered through the stores as ``if`` branches;
the one statement that must be written per dialect (budgets' settle and reclaim, see
:mod:`.budgets`) asks :attr:`Backend.dialect`.

Each backend runs its own numbered migrations (:mod:`.schema`) when opened: SQLite counts
them in ``PRAGMA user_version``, PostgreSQL in a ``schema_migrations`` table.

This module defines the contract and masks URLs; it opens nothing (:mod:`.database` does).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Backend", "Connection", "Cursor", "Dialect", "Row", "mask_url", "to_pyformat"]

Dialect = Literal["sqlite", "postgresql"]
Row = dict[str, Any]
Params = Sequence[Any] | Mapping[str, Any]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the stores call: ``?``/``:name`` SQL, dict rows."""

    def execute(self, sql: str, params: Params = ()) -> Cursor: ...
    def executemany(self, sql: str, params: Sequence[Params]) -> Any: ...


class Backend(Protocol):
    """One database: connections (autocommit), transactions, a reader, its schema."""

    @property
    def dialect(self) -> Dialect: ...
    @property
    def url(self) -> str:
        """Where it is, fit to show (a password masked)."""
        ...

    # SQL that differs: the two-argument maximum, and a float divided into whole buckets
    greatest: str
    bucket: str
    # how many calls can use the database at once (the server's worker threads for it)
    max_connections: int

    def connection(self) -> contextlib.AbstractContextManager[Connection]: ...
    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection inside one transaction that holds the write lock where the
        database has one (SQLite's ``BEGIN IMMEDIATE``); committed on exit, rolled back on
        an exception."""
        ...

    def reader(self) -> contextlib.AbstractContextManager[Connection]:
        """A read-only connection apart from the writer's (the dashboard's queries)."""
        ...

    def schema_version(self) -> int: ...
    def migrations(self) -> int:
        """How many migrations this smallfirst has for the backend."""
        ...

    def integrity_check(self) -> str: ...
    def close(self) -> None: ...


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


# a quoted string (kept as is), '::' (a PostgreSQL cast), :name, ?, or a literal %
_TOKEN = re.compile(r"'[^']*'|::|:([A-Za-z_]\w*)|\?|%")


def to_pyformat(sql: str) -> str:
    """SQLite's ``?`` and ``:name`` parameters as psycopg's ``%s`` and ``%(name)s``; a
    literal ``%`` doubled. The result must always be executed with parameters (an empty
    list if none), or psycopg would not read the doubled ``%%`` back as one."""

    def swap(m: re.Match[str]) -> str:
        text = m.group(0)
        if text.startswith("'"):  # psycopg reads % inside literals too
            return text.replace("%", "%%")
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        if m.group(1) is not None:
            return f"%({m.group(1)})s"
        return text

    return _TOKEN.sub(swap, sql)


def bools_as_ints(params: Params) -> Params:
    """SQLite stores True as 1; PostgreSQL's integer columns need the int said."""
    if isinstance(params, Mapping):
        return {k: int(v) if isinstance(v, bool) else v for k, v in params.items()}
    return [int(v) if isinstance(v, bool) else v for v in params]


@contextlib.contextmanager
def rolled_back_on_error(conn: Any, begin: str) -> Iterator[Any]:
    """``begin`` ... COMMIT, or ROLLBACK when the body raises."""
    conn.execute(begin)
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
