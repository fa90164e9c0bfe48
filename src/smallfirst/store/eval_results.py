"""Per-item evaluation results, in the same database and schema as the receipts.

One row per (run, benchmark, item, model): whether the model was right, what it said, and
what answering cost (tokens, time, energy with its method, dollars, CO2). The primary key is
what makes runs resumable: a re-run asks which keys exist and skips them. Results can be
exported to (and imported from) gzipped JSON lines, the form committed as data.

This module stores; it does not run or score anything.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from smallfirst.errors import StoreError
from smallfirst.store.backend import Backend
from smallfirst.store.database import backend_of


@dataclass(frozen=True, slots=True)
class EvalResult:
    run_id: str
    benchmark: str
    item_id: str
    model: str
    subject: str | None
    prompt_hash: str
    correct: bool
    extracted: str | None
    detail: str | None
    output: str
    prompt_tokens: int | None
    completion_tokens: int | None
    duration_s: float
    energy_j: float | None
    energy_method: str
    cost_usd: float | None
    co2_g: float | None
    created_at: float


_COLUMNS = [f.name for f in fields(EvalResult)]
_KEY = ("run_id", "benchmark", "item_id", "model")
_NEW_RUN = (
    "INSERT INTO eval_runs (run_id, created_at, config) VALUES (?, ?, ?) "
    "ON CONFLICT (run_id) DO NOTHING"
)


def _result(row: Any) -> EvalResult:
    data = {c: row[c] for c in _COLUMNS}
    data["correct"] = bool(data["correct"])
    return EvalResult(**data)


def _export_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of an exported file; a StoreError naming the file (and line) if it is not one."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except ValueError as exc:
                    raise StoreError(f"{path}:{number}: not an exported result ({exc})") from None
                if not isinstance(data, dict) or not {"run_id", "created_at"} <= data.keys():
                    raise StoreError(f"{path}:{number}: not an exported result")
                yield data
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # a missing file, not gzip, cut short
        raise StoreError(f"cannot read {path}: {exc}") from None


def read_export(path: Path) -> list[EvalResult]:
    """The results of an exported file (:meth:`EvalStore.export`), without a database."""
    try:
        return [_result(data) for data in _export_rows(path)]
    except (KeyError, TypeError) as exc:
        raise StoreError(f"{path}: an exported result lacks a field: {exc}") from None


class EvalStore:
    def __init__(self, db: Backend | Path | str) -> None:
        self.path = db if isinstance(db, Path) else None
        self._db, self._owned = backend_of(db)
        # a re-run's answer replaces the stored one (ON CONFLICT: both backends say it so)
        self._insert = (
            f"INSERT INTO eval_results ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join(':' + c for c in _COLUMNS)}) "
            f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in _KEY)
        )

    def start_run(self, run_id: str, config: dict[str, Any]) -> None:
        """Record a run's configuration the first time it is used (kept on resume)."""
        with self._db.connection() as conn:
            conn.execute(_NEW_RUN, (run_id, time.time(), json.dumps(config, sort_keys=True)))

    def runs(self) -> list[dict[str, Any]]:
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT r.run_id, r.created_at, r.config, COUNT(e.item_id) AS results "
                "FROM eval_runs r LEFT JOIN eval_results e USING (run_id) "
                "GROUP BY r.run_id ORDER BY r.created_at"
            ).fetchall()
        return [
            {
                "run_id": r["run_id"],
                "created_at": r["created_at"],
                "config": json.loads(r["config"]),
                "results": r["results"],
            }
            for r in rows
        ]

    def done(self, run_id: str, model: str, benchmark: str) -> dict[str, str]:
        """Item id -> prompt hash of the items already answered in this run by this model."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT item_id, prompt_hash FROM eval_results "
                "WHERE run_id = ? AND model = ? AND benchmark = ?",
                (run_id, model, benchmark),
            ).fetchall()
        return {row["item_id"]: row["prompt_hash"] for row in rows}

    def add(self, result: EvalResult) -> None:
        with self._db.connection() as conn:
            conn.execute(self._insert, asdict(result))

    def results(self, run_id: str | None = None) -> list[EvalResult]:
        sql = "SELECT * FROM eval_results"
        args: list[Any] = []
        if run_id is not None:
            sql += " WHERE run_id = ?"
            args.append(run_id)
        with self._db.connection() as conn:
            rows = conn.execute(sql + " ORDER BY benchmark, item_id, model", args).fetchall()
        return [_result(r) for r in rows]

    def export(self, path: Path, run_id: str | None = None) -> int:
        """Write results as gzipped JSON lines (deterministic order); return the count."""
        results = self.results(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        # mtime=0: the same results give the same bytes, so committed data only changes
        # when the results do
        with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            for r in results:
                gz.write(json.dumps(asdict(r), sort_keys=True).encode() + b"\n")
        tmp.replace(path)
        return len(results)

    def import_file(self, path: Path) -> int:
        """Load exported results (replacing rows with the same key); return the count."""
        count = 0
        with self._db.transaction() as conn:  # a bad file imports nothing
            for data in _export_rows(path):
                conn.execute(self._insert, {c: data.get(c) for c in _COLUMNS})
                conn.execute(
                    _NEW_RUN,
                    (data["run_id"], data["created_at"], json.dumps({"imported": str(path)})),
                )
                count += 1
        return count

    def close(self) -> None:
        if self._owned:
            self._db.close()
