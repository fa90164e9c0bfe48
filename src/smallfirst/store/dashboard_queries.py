"""Read-only aggregate queries behind the dashboard, on the gateway's database.

Receipts per time bucket and model, the span of stored receipts, and the
evaluation results the quality–energy frontier is computed from. Every aggregate is computed
in SQL (``GROUP BY``), so what leaves the database is one row per bucket and model, never
one per receipt.

Each call reads through the backend's reader (:meth:`Backend.reader`): on SQLite its own
short-lived ``query_only`` connection (in WAL mode readers run beside the writer, so the
dashboard neither waits for nor holds the lock the request path takes to store a
receipt), on PostgreSQL a pooled connection in a read-only transaction; either way it
cannot write by mistake.

This module reads; it does not write, migrate (the stores do that), compute receipts or
summarise evaluations (:mod:`smallfirst.evals.report` does).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from smallfirst.store.backend import Backend, Connection, Row
from smallfirst.store.eval_results import EvalResult
from smallfirst.store.sqlite import SqliteStore
from smallfirst.store.sqlite_backend import SqliteBackend, reader


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One model's receipts in one time bucket starting at ``t`` (unix seconds)."""

    t: float
    model: str
    requests: int
    tokens: int
    energy_j: float
    energy_unknown: int


@dataclass(frozen=True, slots=True)
class EvalFingerprint:
    """Changes whenever evaluation results are added or replaced (cheap to compute)."""

    results: int
    last_created_at: float | None
    correct: float
    energy_j: float


class DashboardQueries:
    def __init__(self, db: Backend | Path) -> None:
        # a path: that SQLite file, read without a writer (the stores migrate it)
        if isinstance(db, Path):
            self._connect: Callable[[], AbstractContextManager[Connection]] = partial(reader, db)
            self._bucket = SqliteBackend.bucket
        else:
            self._connect = db.reader
            self._bucket = db.bucket

    def first_receipt_at(
        self, *, since: float | None, until: float | None, model: str | None
    ) -> float | None:
        where, args = SqliteStore._where(since, until, model)
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT MIN(created_at) AS first FROM receipts{where}", args
            ).fetchone()
        return None if row["first"] is None else float(row["first"])

    def timeseries(
        self, *, since: float | None, until: float | None, model: str | None, bucket_s: int
    ) -> list[SeriesPoint]:
        """Receipts per ``bucket_s``-second bucket (aligned to the epoch) and model."""
        where, args = SqliteStore._where(since, until, model)
        sql = (
            f"SELECT {self._bucket} AS bucket, model, COUNT(*) AS requests, "
            "COALESCE(SUM(prompt_tokens), 0) + COALESCE(SUM(completion_tokens), 0) AS tokens, "
            "COALESCE(SUM(energy_j), 0.0) AS energy_j, "
            "SUM(CASE WHEN energy_j IS NULL THEN 1 ELSE 0 END) AS energy_unknown "
            f"FROM receipts{where} GROUP BY bucket, model ORDER BY bucket, model"
        )
        with self._connect() as conn:
            rows = conn.execute(sql, [bucket_s, *args]).fetchall()
        return [
            SeriesPoint(
                t=float(r["bucket"] * bucket_s),
                model=r["model"],
                requests=r["requests"],
                tokens=r["tokens"],
                energy_j=r["energy_j"],
                energy_unknown=r["energy_unknown"],
            )
            for r in rows
        ]

    def eval_fingerprint(self, run_id: str | None = None) -> EvalFingerprint:
        where, args = _run_filter(run_id)
        sql = (
            "SELECT COUNT(*) AS n, MAX(created_at) AS last, COALESCE(SUM(correct), 0) AS correct, "
            f"COALESCE(SUM(energy_j), 0.0) AS energy_j FROM eval_results{where}"
        )
        with self._connect() as conn:
            row = conn.execute(sql, args).fetchone()
        return EvalFingerprint(row["n"], row["last"], float(row["correct"]), row["energy_j"])

    def eval_results(self, run_id: str | None = None) -> list[EvalResult]:
        """Evaluation results without their texts (outputs, details), for summarising.

        ``EvalStore.results`` would read every model output too; summaries need only the
        scores and costs, and outputs are most of the table's bytes.
        """
        where, args = _run_filter(run_id)
        sql = (
            "SELECT run_id, benchmark, item_id, model, prompt_hash, correct, prompt_tokens, "
            "completion_tokens, duration_s, energy_j, energy_method, cost_usd, co2_g, "
            f"created_at FROM eval_results{where}"
        )
        with self._connect() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [_lean_result(r) for r in rows]


def _run_filter(run_id: str | None) -> tuple[str, list[Any]]:
    return (" WHERE run_id = ?", [run_id]) if run_id is not None else ("", [])


def _lean_result(r: Row) -> EvalResult:
    return EvalResult(
        run_id=r["run_id"],
        benchmark=r["benchmark"],
        item_id=r["item_id"],
        model=r["model"],
        subject=None,
        prompt_hash=r["prompt_hash"],
        correct=bool(r["correct"]),
        extracted=None,
        detail=None,
        output="",
        prompt_tokens=r["prompt_tokens"],
        completion_tokens=r["completion_tokens"],
        duration_s=r["duration_s"],
        energy_j=r["energy_j"],
        energy_method=r["energy_method"],
        cost_usd=r["cost_usd"],
        co2_g=r["co2_g"],
        created_at=r["created_at"],
    )
