"""Durable receipts in SQLite: one schema, numbered migrations, queries that aggregate in SQL.

The database lives in the data directory (``smallfirst.db``) in WAL mode. A receipt is
committed before the response that carries it completes; with ``synchronous=NORMAL`` a
commit survives the process being killed (``kill -9``), though not necessarily a power cut
— set ``store_synchronous = "FULL"`` for that, at the price of an fsync per request.

Migrations are a list of SQL scripts; ``PRAGMA user_version`` records how many have run,
so opening an older database brings it up to date and a newer one is refused.

This module stores and queries; it does not compute receipts.
"""

from __future__ import annotations

import base64
import json
import math
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from smallfirst.errors import InvalidCursorError, StoreError
from smallfirst.metering.receipts import Overhead, Receipt

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE receipts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        endpoint TEXT NOT NULL,
        model TEXT NOT NULL,
        tier TEXT NOT NULL,
        engine TEXT NOT NULL,
        stream INTEGER NOT NULL,
        status TEXT NOT NULL,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        duration_s REAL NOT NULL,
        ttft_s REAL,
        energy_j REAL,
        energy_method TEXT NOT NULL,
        energy_scope TEXT,
        energy_source TEXT,
        energy_note TEXT,
        cpu_s REAL,
        cost_usd REAL,
        cost_method TEXT,
        co2_g REAL,
        grid_g_per_kwh REAL NOT NULL,
        pue REAL NOT NULL,
        carbon_source TEXT NOT NULL,
        baseline_model TEXT,
        baseline_energy_j REAL,
        baseline_cost_usd REAL,
        baseline_co2_g REAL,
        baseline_source TEXT,
        saved_energy_j REAL,
        saved_cost_usd REAL,
        saved_co2_g REAL,
        policy TEXT
    );
    CREATE INDEX receipts_created ON receipts (created_at);
    CREATE INDEX receipts_model_created ON receipts (model, created_at);
    """,
    """
    CREATE TABLE eval_runs (
        run_id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        config TEXT NOT NULL
    );
    CREATE TABLE eval_results (
        run_id TEXT NOT NULL,
        benchmark TEXT NOT NULL,
        item_id TEXT NOT NULL,
        model TEXT NOT NULL,
        subject TEXT,
        prompt_hash TEXT NOT NULL,
        correct INTEGER NOT NULL,
        extracted TEXT,
        detail TEXT,
        output TEXT NOT NULL,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        duration_s REAL NOT NULL,
        energy_j REAL,
        energy_method TEXT NOT NULL,
        cost_usd REAL,
        co2_g REAL,
        created_at REAL NOT NULL,
        PRIMARY KEY (run_id, benchmark, item_id, model)
    );
    """,
    # The summary's and the dashboard's aggregates: a covering index, so GROUP BY model, tier
    # walks it in order with no sort and no table lookups (bench/dashboard_endpoints.py).
    """
    CREATE INDEX receipts_model_tier_cover ON receipts (
        model, tier, created_at, status, prompt_tokens, completion_tokens,
        energy_j, energy_method, cost_usd, co2_g,
        baseline_energy_j, baseline_cost_usd, baseline_co2_g,
        saved_energy_j, saved_cost_usd, saved_co2_g, duration_s
    );
    """,
    """
    ALTER TABLE receipts ADD COLUMN predicted_quality REAL;
    ALTER TABLE receipts ADD COLUMN route TEXT;
    """,
    # API keys with their budgets (issue #15, store/keys.py and store/budgets.py); receipts
    # say which key asked. Only a keyed hash of a secret is kept, never the secret.
    """
    CREATE TABLE keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked_at REAL,
        admin INTEGER NOT NULL DEFAULT 0,
        models TEXT,
        rpm INTEGER,
        tpm INTEGER,
        budget_window TEXT NOT NULL DEFAULT 'total',
        budget_usd REAL,
        budget_wh REAL,
        budget_co2_g REAL,
        window_start REAL NOT NULL DEFAULT 0,
        spent_usd REAL NOT NULL DEFAULT 0,
        spent_wh REAL NOT NULL DEFAULT 0,
        spent_co2_g REAL NOT NULL DEFAULT 0,
        reserved_usd REAL NOT NULL DEFAULT 0,
        reserved_wh REAL NOT NULL DEFAULT 0,
        reserved_co2_g REAL NOT NULL DEFAULT 0
    );
    -- open reservations, so that one a killed gateway never settled is given back after
    -- its time to live (store/budgets.py)
    CREATE TABLE reservations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key_id TEXT NOT NULL,
        usd REAL NOT NULL,
        wh REAL NOT NULL,
        co2_g REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX reservations_key_expires ON reservations (key_id, expires_at);
    ALTER TABLE receipts ADD COLUMN key_id TEXT;
    ALTER TABLE receipts ADD COLUMN key_name TEXT;
    CREATE INDEX receipts_key_created ON receipts (key_id, created_at);
    """,
    # Issue 14: the savings rule and the response cache on receipts; work billed to no
    # request (loading a model's weights) as overhead rows.
    """
    ALTER TABLE receipts ADD COLUMN baseline_rule TEXT;
    ALTER TABLE receipts ADD COLUMN cache TEXT;
    ALTER TABLE receipts ADD COLUMN cache_of TEXT;
    CREATE TABLE overhead (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        kind TEXT NOT NULL,
        model TEXT NOT NULL,
        duration_s REAL NOT NULL,
        energy_j REAL,
        energy_method TEXT NOT NULL,
        cpu_s REAL,
        cost_usd REAL,
        co2_g REAL
    );
    CREATE INDEX overhead_created ON overhead (created_at);
    """,
)

Synchronous = Literal["OFF", "NORMAL", "FULL"]


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
    SUM(status = 'ok') AS ok,
    COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,
    COALESCE(SUM(completion_tokens), 0) AS completion_tokens,
    COALESCE(SUM(energy_j), 0) AS energy_j,
    COALESCE(SUM(CASE WHEN energy_method = 'measured' THEN energy_j END), 0) AS energy_measured_j,
    COALESCE(SUM(CASE WHEN energy_method = 'estimated' THEN energy_j END), 0) AS energy_estimated_j,
    COALESCE(SUM(CASE WHEN energy_method = 'profile' THEN energy_j END), 0) AS energy_profile_j,
    SUM(energy_j IS NULL) AS energy_unknown,
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
    SUM(energy_j IS NULL) AS energy_unknown,
    COALESCE(SUM(cpu_s), 0) AS cpu_s,
    COALESCE(SUM(cost_usd), 0) AS cost_usd,
    COALESCE(SUM(co2_g), 0) AS co2_g
"""


def connect(path: Path, synchronous: Synchronous = "NORMAL") -> sqlite3.Connection:
    """Open the database (WAL, autocommit) and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=5000")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        conn.close()
        raise StoreError(
            f"{path} has schema version {version}, newer than this smallfirst "
            f"({len(MIGRATIONS)}); upgrade smallfirst"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
    return conn


class SqliteStore:
    def __init__(self, path: Path, synchronous: Synchronous = "NORMAL") -> None:
        self.path = path
        self._conn = connect(path, synchronous)
        self._lock = threading.Lock()
        self._insert = (
            f"INSERT INTO receipts ({', '.join(Receipt.columns())}) "
            f"VALUES ({', '.join(':' + c for c in Receipt.columns())})"
        )

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def add(self, receipt: Receipt) -> None:
        with self._lock:
            self._conn.execute(self._insert, receipt.row())

    def add_many(self, receipts: list[Receipt]) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(self._insert, [r.row() for r in receipts])
            self._conn.execute("COMMIT")

    def add_overhead(self, overhead: Overhead) -> None:
        """Store work billed to no request (a model load)."""
        row = overhead.row()
        sql = f"INSERT INTO overhead ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})"
        with self._lock:
            self._conn.execute(sql, row)

    def get(self, receipt_id: str) -> Receipt | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM receipts WHERE id = ?", (receipt_id,)
            ).fetchone()
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
        with self._lock:
            rows = self._conn.execute(sql, [*args, limit + 1]).fetchall()
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
        with self._lock:
            per_model = self._conn.execute(
                f"SELECT model, tier, {_SUMS} FROM receipts{where} GROUP BY model, tier "
                "ORDER BY requests DESC",
                args,
            ).fetchall()
            # no rows: the all-zero total, from a query that finds nothing to scan
            empty = (
                None
                if per_model
                else self._conn.execute(f"SELECT {_SUMS} FROM receipts{where}", args).fetchone()
            )
            per_key = (
                self._conn.execute(
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
                else self._conn.execute(
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
        with self._lock:
            return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _receipt(row: sqlite3.Row) -> Receipt:
    data = {c: row[c] for c in Receipt.columns()}
    data["stream"] = bool(data["stream"])
    return Receipt(**data)


def _overhead(rows: list[sqlite3.Row]) -> dict[str, Any]:
    items = [{k: r[k] for k in r.keys()} for r in rows]  # noqa: SIM118 (Row is not a mapping)
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


def _totals(row: sqlite3.Row) -> dict[str, Any]:
    return _with_pcts({k: row[k] for k in row.keys()})  # noqa: SIM118 (Row is not a mapping)


def _with_pcts(out: dict[str, Any]) -> dict[str, Any]:
    out["ok"] = out["ok"] or 0
    out["energy_unknown"] = out["energy_unknown"] or 0
    base = out["baseline_energy_j"]
    out["saved_energy_pct"] = 100.0 * out["saved_energy_j"] / base if base else None
    base_cost = out["baseline_cost_usd"]
    out["saved_cost_pct"] = 100.0 * out["saved_cost_usd"] / base_cost if base_cost else None
    return out
