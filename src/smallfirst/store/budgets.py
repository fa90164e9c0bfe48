"""Budgets of API keys in dollars, watt-hours and grams of CO2: reserve, then settle.

Before a model runs, the request's worst case is *reserved* on every budget of its key by
one conditional ``UPDATE`` whose ``WHERE`` says that spent + reserved + this request still
fits, so concurrent requests, threads, processes or gateway replicas on one database can
never together reserve more than the budget: the check and the increment are one step in
the database, never a read in Python and a write after it (LiteLLM's bypass, issues
#34732, #23714). On SQLite it runs under the write lock (``BEGIN IMMEDIATE``); on
PostgreSQL the row lock serialises it and the ``WHERE`` is re-checked on the newest row,
and the reservation's own row is inserted by the same statement. When the request ends
the reservation *settles*: the reserved amount is taken back and the receipt's actual
figures added to what was spent (on PostgreSQL one statement that deletes the
reservation's row and gives back exactly what it deleted); a request that produced
nothing *releases* it (settles with nothing spent).

Each open reservation is a lease: a row with an expiry (``access_reservation_ttl_s``). One that a
gateway killed mid-request never settled is given back by the key's next reservation after
it expires, or by :meth:`BudgetBook.reclaim` (every key at once), instead of holding the
budget until the window resets (for ``total``, forever).

Windows (``1h``, ``1d``, ``7d``, ``30d``, ``total``) reset on their boundaries, in UTC:
the hour, the day, the week from Monday, 30-day periods counted from the Unix epoch;
``total`` never resets. The roll is done by the same statements (a key whose window
started before the current one counts its spending from zero), so nothing has to run on
the boundary itself. Reservations open across a boundary are kept and settle into the new
window.

This module does not compute worst cases (``smallfirst.server.access`` does) and does
not know HTTP.
"""

from __future__ import annotations

import datetime
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

from smallfirst.errors import QuotaExceededError
from smallfirst.store.backend import Backend, Connection, Row

__all__ = ["UNITS", "WINDOWS", "Amounts", "BudgetBook", "Budgeted"]

WINDOWS: dict[str, float] = {
    "1h": 3600.0,
    "1d": 86400.0,
    "7d": 7 * 86400.0,
    "30d": 30 * 86400.0,
    "total": math.inf,
}
MONDAY_S = 4 * 86400.0  # the Unix epoch was a Thursday; its first Monday came 4 days later
# (column suffix, unit shown in messages)
UNITS = (("usd", "USD"), ("wh", "Wh"), ("co2_g", "gCO2"))
# spent + reserved may pass a budget by this fraction of it, no more: K requests whose
# worst case is budget / K each must all fit although their float sum rounds up.
TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class Amounts:
    """One figure per budget unit; None: unknown (a worst case) or no budget (a limit)."""

    usd: float | None = None
    wh: float | None = None
    co2_g: float | None = None

    def get(self, unit: str) -> float | None:
        value: float | None = getattr(self, unit)
        return value


class Budgeted(Protocol):
    """What budgets need of a key (:class:`smallfirst.store.keys.ApiKey` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def window(self) -> str: ...
    @property
    def window_start(self) -> float: ...
    @property
    def budget(self) -> Amounts: ...
    @property
    def spent(self) -> Amounts: ...
    @property
    def reserved(self) -> Amounts: ...


_ROLL = "CASE WHEN window_start < :ws THEN 0 ELSE spent_{u} END"
_FITS = " AND ".join(
    f"(budget_{u} IS NULL OR {_ROLL.format(u=u)} + reserved_{u} + :{u} <= budget_{u} * :tol)"
    for u, _ in UNITS
)
# GREATEST is the two-argument maximum, spelt MAX on SQLite (Backend.greatest)
_RESERVE = (
    "UPDATE keys SET "
    + ", ".join(
        f"spent_{u} = {_ROLL.format(u=u)}, reserved_{u} = reserved_{u} + :{u}" for u, _ in UNITS
    )
    + f", window_start = GREATEST(window_start, :ws) WHERE id = :id AND {_FITS}"
)
_INSERT = (
    "INSERT INTO reservations (key_id, usd, wh, co2_g, expires_at) "
    "VALUES (:id, :usd, :wh, :co2_g, :expires_at) RETURNING id"
)
# PostgreSQL: the conditional increment and the reservation's row in one statement
_RESERVE_PG = (
    f"WITH fit AS ({_RESERVE} RETURNING id) "
    "INSERT INTO reservations (key_id, usd, wh, co2_g, expires_at) "
    "SELECT id, :usd, :wh, :co2_g, :expires_at FROM fit RETURNING id"
)


def _settle(held: str) -> str:
    """Add the actual figures to spent and give back what ``held`` (per unit) reserved."""
    return (
        "UPDATE keys SET "
        + ", ".join(
            f"spent_{u} = {_ROLL.format(u=u)} + :a_{u}, "
            f"reserved_{u} = GREATEST(reserved_{u} - {held.format(u=u)}, 0)"
            for u, _ in UNITS
        )
        + ", window_start = GREATEST(window_start, :ws) WHERE id = :id"
    )


_SETTLE = _settle(":r_{u}")
# PostgreSQL: the reservation's row deleted and its amounts given back in one statement; a
# row already reclaimed (or settled by a racing call) is deleted by nobody and gives nothing
_SETTLE_PG = (
    "WITH held AS (DELETE FROM reservations WHERE id = :rid RETURNING usd, wh, co2_g) "
    + _settle("COALESCE((SELECT {u} FROM held), 0)")
)

_STALE = "SELECT 1 AS stale FROM reservations WHERE key_id = :id AND expires_at <= :now LIMIT 1"
# Reclaiming expired leases, on SQLite under its write lock (two statements, one transaction)
_SWEEP = (
    "UPDATE keys SET "
    + ", ".join(
        f"reserved_{u} = GREATEST(reserved_{u} - (SELECT COALESCE(SUM({u}), 0) FROM reservations r "
        "WHERE r.key_id = keys.id AND r.expires_at <= :now), 0)"
        for u, _ in UNITS
    )
    + " WHERE id IN (SELECT key_id FROM reservations WHERE expires_at <= :now{key})"
)
_SWEPT = "DELETE FROM reservations WHERE expires_at <= :now{key}"
# ... and on PostgreSQL as one statement: what this statement deleted is what it gives back,
# so two replicas reclaiming at once cannot both give back the same lease
_SWEEP_PG = (
    "WITH gone AS (DELETE FROM reservations WHERE expires_at <= :now{key} "
    "RETURNING key_id, usd, wh, co2_g), "
    "per AS (SELECT key_id, SUM(usd) AS usd, SUM(wh) AS wh, SUM(co2_g) AS co2_g "
    "FROM gone GROUP BY key_id) "
    "UPDATE keys SET "
    + ", ".join(f"reserved_{u} = GREATEST(keys.reserved_{u} - per.{u}, 0)" for u, _ in UNITS)
    + " FROM per WHERE keys.id = per.key_id"
)
_ONE_KEY = " AND key_id = :id"


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")


class BudgetBook:
    """Reservations on the keys table of one backend (shared with the key store)."""

    def __init__(self, db: Backend) -> None:
        self._db = db
        self._pg = db.dialect == "postgresql"
        self._sql = {
            sql: sql.replace("GREATEST(", db.greatest + "(")
            for sql in (_RESERVE, _RESERVE_PG, _SETTLE, _SETTLE_PG, _SWEEP, _SWEEP_PG)
        }

    @staticmethod
    def window_start(window: str, now: float) -> float:
        """When the window holding ``now`` began (0 for ``total``)."""
        length = WINDOWS[window]
        if math.isinf(length):
            return 0.0
        offset = MONDAY_S if window == "7d" else 0.0
        return math.floor((now - offset) / length) * length + offset

    @staticmethod
    def resets_at(window: str, now: float) -> float | None:
        """When the window holding ``now`` ends (None: never)."""
        length = WINDOWS[window]
        return None if math.isinf(length) else BudgetBook.window_start(window, now) + length

    def reserve(self, key: Budgeted, worst: Amounts, ttl_s: float, now: float | None = None) -> int:
        """Reserve ``worst`` on every budget of ``key`` at once and return the reservation's
        id, or raise :class:`QuotaExceededError` naming the budget that it does not fit.

        The reservation is a lease of ``ttl_s`` seconds. First, in the same transaction,
        leases of ``key`` that expired (a gateway killed before it settled them) are given
        back."""
        now = time.time() if now is None else now
        ws = self.window_start(key.window, now)
        args: dict[str, Any] = {u: worst.get(u) or 0.0 for u, _ in UNITS}
        args.update(id=key.id, ws=ws, tol=1 + TOLERANCE, now=now, expires_at=now + ttl_s)
        with self._db.transaction() as conn:
            if conn.execute(_STALE, args).fetchone() is not None:
                self._reclaim(conn, args, _ONE_KEY)
            if self._pg:
                held = conn.execute(self._sql[_RESERVE_PG], args).fetchone()
            elif conn.execute(self._sql[_RESERVE], args).rowcount == 1:
                held = conn.execute(_INSERT, args).fetchone()
            else:
                held = None
            row = None
            if held is None:
                row = conn.execute("SELECT * FROM keys WHERE id = ?", (key.id,)).fetchone()
        if held is None:
            raise self._refusal(key, worst, row, now)
        return int(held["id"])

    def settle(
        self, key: Budgeted, reservation: int, actual: Amounts, now: float | None = None
    ) -> None:
        """Close ``reservation``: give back what it still holds (nothing if it was
        reclaimed) and add ``actual`` to what ``key`` spent, atomically."""
        now = time.time() if now is None else now
        args: dict[str, Any] = {"id": key.id, "ws": self.window_start(key.window, now)}
        args["rid"] = reservation
        for u, _ in UNITS:
            args[f"a_{u}"] = actual.get(u) or 0.0
        if self._pg:
            with self._db.connection() as conn:
                conn.execute(self._sql[_SETTLE_PG], args)
            return
        with self._db.transaction() as conn:
            held = conn.execute(
                "DELETE FROM reservations WHERE id = ? RETURNING usd, wh, co2_g", (reservation,)
            ).fetchone()
            for u, _ in UNITS:
                args[f"r_{u}"] = held[u] if held is not None else 0.0
            conn.execute(self._sql[_SETTLE], args)

    def reclaim(self, now: float | None = None) -> int:
        """Give back every expired lease of every key (what a live replica runs for one
        that died); returns how many keys had some."""
        args = {"now": time.time() if now is None else now}
        with self._db.transaction() as conn:
            return self._reclaim(conn, args, "")

    def _reclaim(self, conn: Connection, args: dict[str, Any], key: str) -> int:
        if self._pg:
            return int(conn.execute(self._sql[_SWEEP_PG].format(key=key), args).rowcount)
        count = int(conn.execute(self._sql[_SWEEP].format(key=key), args).rowcount)
        conn.execute(_SWEPT.format(key=key), args)
        return count

    def _refusal(
        self, key: Budgeted, worst: Amounts, row: Row | None, now: float
    ) -> QuotaExceededError:
        if row is None:
            return QuotaExceededError(f"The API key {key.name} no longer exists.")
        rolled = row["window_start"] < self.window_start(key.window, now)
        for u, label in UNITS:
            budget, need = row[f"budget_{u}"], worst.get(u) or 0.0
            if budget is None:
                continue
            spent = 0.0 if rolled else row[f"spent_{u}"]
            left = budget - spent - row[f"reserved_{u}"]
            if need <= left + budget * TOLERANCE:
                continue
            resets = self.resets_at(key.window, now)
            when = "never (window: total)" if resets is None else f"at {_iso(resets)}"
            return QuotaExceededError(
                f"You exceeded your {label} budget on key {key.name}: this request may need "
                f"up to {need:.6g} {label} and {max(left, 0.0):.6g} {label} of "
                f"{budget:.6g} is left (spent {spent:.6g}, reserved by requests in flight "
                f"{row[f'reserved_{u}']:.6g}); the {key.window} window resets {when}."
            )
        return QuotaExceededError(f"The budget of key {key.name} is exhausted.")

    @staticmethod
    def report(key: Budgeted, now: float | None = None) -> dict[str, Any]:
        """Spent, reserved and left per budget, as of ``now`` (a rolled window shows 0)."""
        now = time.time() if now is None else now
        rolled = key.window_start < BudgetBook.window_start(key.window, now)
        out: dict[str, Any] = {}
        for u, label in UNITS:
            budget = key.budget.get(u)
            spent = 0.0 if rolled else key.spent.get(u) or 0.0
            reserved = key.reserved.get(u) or 0.0
            out[u] = {
                "unit": label,
                "budget": budget,
                "spent": spent,
                "reserved": reserved,
                "left": None if budget is None else budget - spent - reserved,
            }
        resets = BudgetBook.resets_at(key.window, now)
        out["resets_at"] = None if resets is None else _iso(resets)
        return out
