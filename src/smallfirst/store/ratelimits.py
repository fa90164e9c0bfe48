"""Requests and tokens per minute per API key, counted in the database, so that every
gateway replica on one PostgreSQL shares one window per key (issue #18).

A key's last minute is its rows in ``rate_events`` (when, and how many tokens). Admitting a
request is one transaction that holds the key's row lock (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` write lock), drops the key's rows older than the
window, sums what is left in SQL, and inserts the request's row only if it fits: two
replicas cannot both see room for the last request. Times are wall-clock seconds (replicas
share no monotonic clock); a skew between replicas' clocks shifts the window by as much.

The gateway uses this with PostgreSQL; on SQLite (one host) it keeps counting in memory
(:mod:`smallfirst.server.ratelimit`), as before. This module decides and stores; it
formats no error and no header.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from smallfirst.store.backend import Backend, Connection

__all__ = ["WINDOW_S", "Admitted", "RateBook", "Refusal", "Usage"]

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request does not fit: the limit it would pass, and when it would fit."""

    what: str
    wait_s: float


@dataclass(frozen=True, slots=True)
class Usage:
    """A key's last minute: requests, tokens, and when its oldest request came."""

    requests: int
    tokens: int
    oldest: float | None


@dataclass(frozen=True, slots=True)
class Admitted:
    """A counted request: its row, and the key's window with it counted (for the headers)."""

    id: int
    usage: Usage


_USAGE = (
    "SELECT COUNT(*) AS requests, COALESCE(SUM(tokens), 0) AS tokens, MIN(at) AS oldest "
    "FROM rate_events WHERE key_id = ? AND at > ?"
)


class RateBook:
    """The shared windows of the keys of one backend."""

    def __init__(self, db: Backend) -> None:
        self._db = db
        self._lock_key = (
            "SELECT id FROM keys WHERE id = ? FOR UPDATE" if db.dialect == "postgresql" else None
        )

    def admit(
        self, key_id: str, rpm: int | None, tpm: int | None, tokens: int, now: float | None = None
    ) -> Admitted | Refusal:
        """Count one request of ``tokens``: its row and the window it joined, or the
        :class:`Refusal`."""
        now = time.time() if now is None else now
        start = now - WINDOW_S
        with self._db.transaction() as conn:
            if self._lock_key is not None:
                conn.execute(self._lock_key, (key_id,))  # one admission per key at a time
            conn.execute("DELETE FROM rate_events WHERE key_id = ? AND at <= ?", (key_id, start))
            usage = conn.execute(_USAGE, (key_id, start)).fetchone()
            count, used = int(usage["requests"]), int(usage["tokens"])
            oldest = now if usage["oldest"] is None else float(usage["oldest"])
            if rpm is not None and count >= rpm:
                # the (count - rpm + 1)th oldest must leave the window first
                row = conn.execute(
                    "SELECT at FROM rate_events WHERE key_id = ? ORDER BY at LIMIT 1 OFFSET ?",
                    (key_id, count - rpm),
                ).fetchone()
                return Refusal(f"{rpm} requests per minute", row["at"] + WINDOW_S - now)
            if tpm is not None and tokens > tpm:
                return Refusal(
                    f"{tpm} tokens per minute (this request alone may need {tokens})", WINDOW_S
                )
            if tpm is not None and used + tokens > tpm:
                wait = self._tokens_wait(conn, key_id, now, used + tokens - tpm)
                return Refusal(f"{tpm} tokens per minute", wait)
            row = conn.execute(
                "INSERT INTO rate_events (key_id, at, tokens) VALUES (?, ?, ?) RETURNING id",
                (key_id, now, tokens),
            ).fetchall()[0]
        return Admitted(int(row["id"]), Usage(count + 1, used + tokens, oldest))

    @staticmethod
    def _tokens_wait(conn: Connection, key_id: str, now: float, excess: int) -> float:
        """When enough of the oldest requests' tokens will have left the window."""
        rows = conn.execute(
            "SELECT at, tokens FROM rate_events WHERE key_id = ? ORDER BY at", (key_id,)
        ).fetchall()
        freed = 0
        for r in rows:
            freed += int(r["tokens"])
            if freed >= excess:
                return float(r["at"]) + WINDOW_S - now
        return WINDOW_S

    def correct(self, event: int, tokens: int) -> None:
        """Replace an admitted request's estimate by its actual tokens."""
        with self._db.connection() as conn:
            conn.execute("UPDATE rate_events SET tokens = ? WHERE id = ?", (max(0, tokens), event))

    def usage(self, key_id: str, now: float | None = None) -> Usage:
        """What ``key_id`` used in the window ending at ``now``."""
        start = (time.time() if now is None else now) - WINDOW_S
        with self._db.connection() as conn:
            row = conn.execute(_USAGE, (key_id, start)).fetchone()
        return Usage(int(row["requests"]), int(row["tokens"]), row["oldest"])
