"""Durable receipts: store, page, filter and aggregate them in SQL, on either backend.

The receipts and the overhead rows (work billed to no request) live in the database a
:class:`~smallfirst.store.backend.Backend` opens: the SQLite file of the data directory by
default, or PostgreSQL (:mod:`.database`). A receipt is committed before the response that
carries it completes, on both. The queries are the same SQL on both; every total is a
``GROUP BY`` in the database, never a loop over receipts here.

The module keeps its first name (``store.sqlite``, ``SqliteStore``) for the code and tests
that import it; :class:`ReceiptStore` is the name that says what it is.

This module stores and queries; it does not compute receipts.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smallfirst.errors import InvalidCursorError
from smallfirst.metering.receipts import Overhead, Receipt
from smallfirst.store.backend import Backend, Row
from smallfirst.store.database import backend_of
from smallfirst.store.sqlite_backend import Synchronous

__all__ = ["Page", "ReceiptStore", "SqliteStore", "cursor_decode"]


@dataclass(frozen=True, slots=True)
class Page:
    receipts: list[Receipt]
    next_cursor: str | None


def _cursor_encode(created_at: float, seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, seq]).encode()).decode()


def cursor_decode(cursor: str) -> tuple[float, int]:
    """Raise InvalidCursorError for anything that is not a cursor this store made."""
    try:
        created_at, seq = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(created_at), int(seq)
    except Exception as exc:
        raise InvalidCursorError("invalid cursor", param="cursor") from exc


_SUMS = """
    COUNT(*) AS requests,
    SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS ok,
    COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,
    COALESCE(SUM(completion_tokens), 0) AS completion_tokens,
    COALESCE(SUM(energy_j), 0) AS energy_j,
    COALESCE(SUM(CASE WHEN energy_method = 'measured' THEN energy_j END), 0) AS energy_measured_j,
    COALESCE(SUM(CASE WHEN energy_method = 'estimated' THEN energy_j END), 0) AS energy_estimated_j,
    COALESCE(SUM(CASE WHEN energy_method = 'profile' THEN energy_j END), 0) AS energy_profile_j,
    SUM(CASE WHEN energy_j IS NULL THEN 1 ELSE 0 END) AS energy_unknown,
    COALESCE(SUM(cost_usd), 0) AS cost_usd,
    COALESCE(SUM(co2_g), 0) AS co2_g,
    COALESCE(SUM(CASE WHEN saved_energy_j IS NOT NULL THEN baseline_energy_j END), 0)
        AS baseline_energy_j,
    COALESCE(SUM(CASE WHEN saved_cost_usd IS NOT NULL THEN baseline_cost_usd END), 0)
        AS baseline_cost_usd,
    COALESCE(SUM(CASE WHEN saved_co2_g IS NOT NULL THEN baseline_co2_g END), 0)
        AS baseline_co2_g,
    COALESCE(SUM(saved_energy_j), 0) AS saved_energy_j,
    COALESCE(SUM(saved_cost_usd), 0) AS saved_cost_usd,
    COALESCE(SUM(saved_co2_g), 0) AS saved_co2_g,
    COALESCE(SUM(duration_s), 0) AS duration_s
"""


# Work billed to no request, per kind and model (not part of the receipts' totals).
_OVERHEAD_SUMS = """
    COUNT(*) AS count,
    COALESCE(SUM(duration_s), 0) AS duration_s,
    COALESCE(SUM(energy_j), 0) AS energy_j,
    SUM(CASE WHEN energy_j IS NULL THEN 1 ELSE 0 END) AS energy_unknown,
    COALESCE(SUM(cpu_s), 0) AS cpu_s,
    COALESCE(SUM(cost_usd), 0) AS cost_usd,
    COALESCE(SUM(co2_g), 0) AS co2_g
"""


class ReceiptStore:
    """Receipts and overhead rows in one backend's database."""

    def __init__(self, db: Backend | Path | str, synchronous: Synchronous = "NORMAL") -> None:
        self.backend, self._owned = backend_of(db, synchronous)
        self.path = db if isinstance(db, Path) else None
        self._insert = (
            f"INSERT INTO receipts ({', '.join(Receipt.columns())}) "
            f"VALUES ({', '.join(':' + c for c in Receipt.columns())})"
        )

    @property
    def schema_version(self) -> int:
        return self.backend.schema_version()

    def add(self, receipt: Receipt) -> None:
        with self.backend.connection() as conn:
            conn.execute(self._insert, receipt.row())

    def add_many(self, receipts: list[Receipt]) -> None:
        with self.backend.transaction() as conn:
            conn.executemany(self._insert, [r.row() for r in receipts])

    def add_overhead(self, overhead: Overhead) -> None:
        """Store work billed to no request (a model load)."""
        row = overhead.row()
        sql = f"INSERT INTO overhead ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})"
        with self.backend.connection() as conn:
            conn.execute(sql, row)

    def get(self, receipt_id: str) -> Receipt | None:
        with self.backend.connection() as conn:
            row = conn.execute("SELECT * FROM receipts WHERE id = ?", (receipt_id,)).fetchone()
        return _receipt(row) if row else None

    @staticmethod
    def _where(
        since: float | None, until: float | None, model: str | None, key_id: str | None = None
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if key_id is not None:  # one API key's receipts only (issue #15)
            clauses.append("key_id = ?")
            args.append(key_id)
        if since is not None:
            clauses.append("created_at >= ?")
            args.append(since)
        if until is not None:
            clauses.append("created_at < ?")
            args.append(until)
        if model is not None:
            clauses.append("model = ?")
            args.append(model)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def list(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        model: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        key_id: str | None = None,
    ) -> Page:
        """Newest first; ``cursor`` continues where the previous page stopped."""
        where, args = self._where(since, until, model, key_id)
        if cursor is not None:
            created_at, seq = cursor_decode(cursor)
            where += (" AND " if where else " WHERE ") + "(created_at, seq) < (?, ?)"
            args += [created_at, seq]
        sql = f"SELECT * FROM receipts{where} ORDER BY created_at DESC, seq DESC LIMIT ?"
        with self.backend.connection() as conn:
            rows = conn.execute(sql, [*args, limit + 1]).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _cursor_encode(rows[-1]["created_at"], rows[-1]["seq"]) if more else None
        return Page([_receipt(r) for r in rows], next_cursor)

    def summary(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        model: str | None = None,
        key_id: str | None = None,
        by_key: bool = False,
    ) -> dict[str, Any]:
        """Totals and per-model rows; ``by_key`` adds per-API-key rows (``keys``: key id
        and name, None for requests made without a key)."""
        where, args = self._where(since, until, model, key_id)
        with self.backend.connection() as conn:
            per_model = conn.execute(
                f"SELECT model, tier, {_SUMS} FROM receipts{where} GROUP BY model, tier "
                "ORDER BY requests DESC",
                args,
            ).fetchall()
            # no rows: the all-zero total, from a query that finds nothing to scan
            empty = (
                None
                if per_model
                else conn.execute(f"SELECT {_SUMS} FROM receipts{where}", args).fetchone()
            )
            per_key = (
                conn.execute(
                    f"SELECT key_id, MAX(key_name) AS key_name, {_SUMS} FROM receipts{where} "
                    "GROUP BY key_id ORDER BY requests DESC",
                    args,
                ).fetchall()
                if by_key
                else None
            )
            # overhead is no key's: one key's summary has none
            owhere, oargs = self._where(since, until, model)
            overhead = (
                []
                if key_id is not None
                else conn.execute(
                    f"SELECT kind, model, {_OVERHEAD_SUMS} FROM overhead{owhere} "
                    "GROUP BY kind, model ORDER BY kind, model",
                    oargs,
                ).fetchall()
            )
        models = [_totals(r) for r in per_model]
        # One pass over the receipts: every figure is a sum, so the total is the sum of the
        # groups (floats added exactly); a second scan for it doubled the cost on big tables.
        out = {
            "total": _add_up(models) if empty is None else _totals(empty),
            "models": models,
            "overhead": _overhead(overhead),
        }
        if per_key is not None:
            out["keys"] = [_totals(r) for r in per_key]
        return out

    def integrity_check(self) -> str:
        return self.backend.integrity_check()

    def close(self) -> None:
        if self._owned:
            self.backend.close()


SqliteStore = ReceiptStore  # the name it had before PostgreSQL


def _receipt(row: Row) -> Receipt:
    data = {c: row[c] for c in Receipt.columns()}
    data["stream"] = bool(data["stream"])
    return Receipt(**data)


def _overhead(rows: list[Row]) -> dict[str, Any]:
    items = [dict(r) for r in rows]
    total: dict[str, Any] = {"count": 0, "duration_s": 0.0, "energy_j": 0.0}
    for key in ("count", "energy_unknown"):
        total[key] = sum(int(i[key] or 0) for i in items)
    for key in ("duration_s", "energy_j", "cpu_s", "cost_usd", "co2_g"):
        total[key] = math.fsum(i[key] for i in items)
    return {"total": total, "items": items}


def _add_up(groups: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in groups[0]:
        if key in ("model", "tier", "key_id", "key_name") or key.endswith("_pct"):
            continue
        values = [g[key] for g in groups]
        out[key] = sum(values) if all(isinstance(v, int) for v in values) else math.fsum(values)
    return _with_pcts(out)


def _totals(row: Row) -> dict[str, Any]:
    return _with_pcts(dict(row))


def _with_pcts(out: dict[str, Any]) -> dict[str, Any]:
    out["ok"] = out["ok"] or 0
    out["energy_unknown"] = out["energy_unknown"] or 0
    base = out["baseline_energy_j"]
    out["saved_energy_pct"] = 100.0 * out["saved_energy_j"] / base if base else None
    base_cost = out["baseline_cost_usd"]
    out["saved_cost_pct"] = 100.0 * out["saved_cost_usd"] / base_cost if base_cost else None
    return out
