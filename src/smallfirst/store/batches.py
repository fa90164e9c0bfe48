"""Batches and their lines in the store: created whole, claimed under leases, finished once.

A batch's row holds OpenAI's batch object (status and its timestamps, the files, errors,
metadata) and our plan; each input line has a row pointing at its bytes in the input file
(``byte_offset``, ``byte_length``: the contents stay in the data directory).

Exactly once: a runner *claims* lines with one conditional ``UPDATE ... RETURNING`` that
takes pending lines, and running ones whose lease ran out (their runner died), stamping
them with its own claim token and a new lease. On SQLite it runs under the write lock; on
PostgreSQL the ``WHERE`` is repeated on the outer statement, so a row another runner took
meanwhile is re-checked on its newest version and skipped, never claimed twice. A line is
*finished* by a second conditional ``UPDATE`` that writes its status and its output line
in the same statement, and only while the claim is still the runner's own: a runner that
lost its lease has its answer dropped, and a finished line is never claimed again.
The tokens a finished line used are added to its batch's counters (OpenAI's ``usage``) in
the same transaction, and only when that update took the line: a line is counted once,
and reading a batch's usage reads its one row.

Expired files are swept here (:meth:`BatchStore.sweep_files`), not in
:mod:`.files`, because whether an unfinished batch still reads a file is the batches' to
know: such a file is kept until its batch ends.
Batch status moves by conditional updates too (``from`` statuses in the ``WHERE``), so two
runners cannot both finalise one batch.

This module does not run lines, build output lines or know HTTP.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from smallfirst.errors import NotFoundError
from smallfirst.store.backend import Backend, Row
from smallfirst.store.files import owned

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "BatchRecord",
    "BatchStore",
    "Claimed",
    "Counts",
    "LineRef",
    "Tokens",
]

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
TERMINAL = ("completed", "failed", "expired", "cancelled")
_STAMPS = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}


@dataclass(frozen=True, slots=True)
class LineRef:
    """Where one input line is: its 1-based number, custom_id and bytes in the file."""

    line: int
    custom_id: str
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Claimed:
    batch_id: str
    line: int
    custom_id: str
    offset: int
    length: int
    claim: str


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    completed: int
    failed: int
    pending: int
    running: int
    co2_g: float | None  # the finished lines' receipts, summed (None: none known)
    with_co2: int
    energy_j: float | None  # likewise


@dataclass(frozen=True, slots=True)
class Tokens:
    """Tokens one line used (or a batch's lines, summed): prompt, of which cached, and
    generated."""

    input: int = 0
    cached: int = 0
    output: int = 0

    def public(self) -> dict[str, Any]:
        """OpenAI's ``BatchUsage`` (no reasoning tokens are generated here)."""
        return {
            "input_tokens": self.input,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input + self.output,
        }


@dataclass(frozen=True, slots=True)
class BatchRecord:
    id: str
    key_id: str | None
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: float
    expires_at: float
    stamps: dict[str, float | None]
    output_file_id: str | None
    error_file_id: str | None
    errors: list[dict[str, Any]] | None
    metadata: dict[str, str] | None
    plan: dict[str, Any] | None
    usage: Tokens = Tokens()  # the finished lines', summed
    output_expires_s: float | None = None  # its output files' lifetime (None: no expiry)


def _record(row: Row) -> BatchRecord:
    return BatchRecord(
        id=row["id"],
        key_id=row["key_id"],
        endpoint=row["endpoint"],
        input_file_id=row["input_file_id"],
        completion_window=row["completion_window"],
        status=row["status"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        stamps={c: row[c] for c in _STAMPS.values()},
        output_file_id=row["output_file_id"],
        error_file_id=row["error_file_id"],
        errors=json.loads(row["errors"]) if row["errors"] else None,
        metadata=json.loads(row["metadata"]) if row["metadata"] else None,
        plan=json.loads(row["plan"]) if row["plan"] else None,
        usage=Tokens(
            int(row["input_tokens"]), int(row["cached_tokens"]), int(row["output_tokens"])
        ),
        output_expires_s=row["output_expires_s"],
    )


# pending lines, and running ones whose runner's lease ran out
_CLAIMABLE = "(status = 'pending' OR (status = 'running' AND claimed_until < :now))"
_CLAIM = (
    "UPDATE batch_lines SET status = 'running', claim = :claim, claimed_until = :until, "
    "attempts = attempts + 1 "
    f"WHERE batch_id = :batch AND {_CLAIMABLE} AND line IN ("
    f"SELECT line FROM batch_lines WHERE batch_id = :batch AND {_CLAIMABLE} "
    "ORDER BY line LIMIT :n) "
    "RETURNING line, custom_id, byte_offset, byte_length"
)
_FINISH = (
    "UPDATE batch_lines SET status = :status, output = :output, receipt_id = :receipt_id, "
    "grid_g_per_kwh = :grid, co2_g = :co2_g, energy_j = :energy_j, finished_at = :now, "
    "claimed_until = NULL "
    "WHERE batch_id = :batch AND line = :line AND status = 'running' AND claim = :claim"
)
# files expired at :now that no unfinished batch reads (those wait for their batch to end)
_SWEEPABLE = (
    "expires_at <= :now AND NOT EXISTS (SELECT 1 FROM batches "
    "WHERE batches.input_file_id = files.id AND batches.status IN ({active}))"
).format(active=", ".join(f"'{s}'" for s in ACTIVE))
_SWEEP = (
    f"DELETE FROM files WHERE {_SWEEPABLE} AND id IN ("
    f"SELECT id FROM files WHERE {_SWEEPABLE} ORDER BY expires_at LIMIT :n) "
    "RETURNING id"
)
_COUNT_TOKENS = (
    "UPDATE batches SET input_tokens = input_tokens + :input, "
    "cached_tokens = cached_tokens + :cached, output_tokens = output_tokens + :output "
    "WHERE id = :batch"
)


class BatchStore:
    """The batches of one database."""

    def __init__(self, db: Backend) -> None:
        self._db = db

    def create(
        self,
        batch: dict[str, Any],
        lines: Sequence[LineRef],
    ) -> BatchRecord:
        """Store a batch (a row's columns) and all its lines in one transaction."""
        cols = ", ".join(batch)
        with self._db.transaction() as conn:
            conn.execute(
                f"INSERT INTO batches ({cols}) VALUES ({', '.join(':' + c for c in batch)})",
                batch,
            )
            conn.executemany(
                "INSERT INTO batch_lines (batch_id, line, custom_id, byte_offset, byte_length, "
                "status) VALUES (?, ?, ?, ?, ?, 'pending')",
                [(batch["id"], r.line, r.custom_id, r.offset, r.length) for r in lines],
            )
        return self.get(batch["id"], None)

    def get(self, batch_id: str, key_id: str | None) -> BatchRecord:
        where, params = owned(key_id)
        with self._db.connection() as conn:
            row = conn.execute(
                f"SELECT * FROM batches WHERE id = :id AND {where}", {"id": batch_id, **params}
            ).fetchone()
        if row is None:
            raise NotFoundError(f"No batch found with id '{batch_id}'.", param="batch_id")
        return _record(row)

    def page(self, key_id: str | None, *, after: str | None, limit: int) -> list[BatchRecord]:
        """Newest first, after the batch ``after``."""
        where, params = owned(key_id)
        params = {**params, "limit": limit}
        if after is not None:
            where += " AND seq < (SELECT seq FROM batches WHERE id = :after)"
            params["after"] = after
        with self._db.connection() as conn:
            rows = conn.execute(
                f"SELECT * FROM batches WHERE {where} ORDER BY seq DESC LIMIT :limit", params
            ).fetchall()
        return [_record(r) for r in rows]

    def active(self) -> list[BatchRecord]:
        """Every batch not yet in a final status, oldest first (the runner's work)."""
        marks = ", ".join(f"'{s}'" for s in ACTIVE)
        with self._db.connection() as conn:
            rows = conn.execute(
                f"SELECT * FROM batches WHERE status IN ({marks}) ORDER BY seq"
            ).fetchall()
        return [_record(r) for r in rows]

    def uses_file(self, file_id: str) -> str | None:
        """The id of an active batch reading ``file_id``, if any."""
        marks = ", ".join(f"'{s}'" for s in ACTIVE)
        with self._db.connection() as conn:
            row = conn.execute(
                f"SELECT id FROM batches WHERE input_file_id = ? AND status IN ({marks})",
                (file_id,),
            ).fetchone()
        return None if row is None else str(row["id"])

    def sweep_files(self, now: float, n: int) -> list[str]:
        """Delete the rows of up to ``n`` expired files (soonest expired first), except the
        input of a batch not yet ended; their ids, whose bytes the caller then discards.
        The DELETE checks the batches itself, so a batch made before it keeps its file."""
        with self._db.connection() as conn:
            # a read on the index first: most ticks find nothing, and take no write lock
            due = conn.execute(
                "SELECT 1 FROM files WHERE expires_at <= ? LIMIT 1", (now,)
            ).fetchone()
            if due is None:
                return []
            rows = conn.execute(_SWEEP, {"now": now, "n": n}).fetchall()
        return [str(r["id"]) for r in rows]

    def move(
        self,
        batch_id: str,
        to: str,
        *,
        since: Iterable[str],
        now: float | None = None,
        **columns: Any,
    ) -> bool:
        """Set ``batch_id``'s status to ``to`` (and ``columns``) if it is one of ``since``;
        whether it moved. The status's timestamp is set once."""
        marks = ", ".join(f"'{s}'" for s in since)
        sets = ["status = :to"] + [f"{c} = :{c}" for c in columns]
        stamp = _STAMPS.get(to)
        if stamp is not None:
            sets.append(f"{stamp} = COALESCE({stamp}, :now)")
        with self._db.connection() as conn:
            cur = conn.execute(
                f"UPDATE batches SET {', '.join(sets)} WHERE id = :id AND status IN ({marks})",
                {
                    "to": to,
                    "id": batch_id,
                    "now": time.time() if now is None else now,
                    **columns,
                },
            )
            return cur.rowcount > 0

    def set_plan(self, batch_id: str, plan: dict[str, Any]) -> None:
        with self._db.connection() as conn:
            conn.execute("UPDATE batches SET plan = ? WHERE id = ?", (json.dumps(plan), batch_id))

    def counts(self, batch_id: str, now: float | None = None) -> Counts:
        """Lines by state; ``running`` counts only live leases (an expired one is pending)."""
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT COUNT(*) AS total, "
                "SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) AS completed, "
                "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed, "
                f"SUM(CASE WHEN {_CLAIMABLE} THEN 1 ELSE 0 END) AS pending, "
                "SUM(co2_g) AS co2_g, COUNT(co2_g) AS with_co2, SUM(energy_j) AS energy_j "
                "FROM batch_lines WHERE batch_id = :batch",
                {"batch": batch_id, "now": time.time() if now is None else now},
            ).fetchone()
        total = int(row["total"])
        completed, failed = int(row["completed"] or 0), int(row["failed"] or 0)
        pending = int(row["pending"] or 0)
        running = total - completed - failed - pending
        co2 = None if row["co2_g"] is None else float(row["co2_g"])
        energy = None if row["energy_j"] is None else float(row["energy_j"])
        return Counts(total, completed, failed, pending, running, co2, int(row["with_co2"]), energy)

    def claim(
        self, batch_id: str, n: int, claim: str, lease_s: float, now: float | None = None
    ) -> list[Claimed]:
        """Up to ``n`` lines of ``batch_id`` for the runner ``claim``, leased ``lease_s``."""
        now = time.time() if now is None else now
        params = {"batch": batch_id, "n": n, "claim": claim, "until": now + lease_s, "now": now}
        with self._db.transaction() as conn:
            rows = conn.execute(_CLAIM, params).fetchall()
        return sorted(
            (
                Claimed(
                    batch_id, r["line"], r["custom_id"], r["byte_offset"], r["byte_length"], claim
                )
                for r in rows
            ),
            key=lambda c: c.line,
        )

    def finish(
        self,
        line: Claimed,
        *,
        ok: bool,
        output: dict[str, Any],
        receipt: dict[str, Any] | None = None,
        tokens: Tokens | None = None,
        now: float | None = None,
    ) -> bool:
        """Record ``line``'s output line and status at once, if the claim is still ours, and
        add the ``tokens`` it used to its batch's in the same transaction; False: the lease
        was lost and another runner owns the line (this answer and its tokens are dropped)."""
        carbon = (receipt or {}).get("carbon") or {}
        energy = (receipt or {}).get("energy") or {}
        params = {
            "status": "done" if ok else "failed",
            "output": json.dumps(output, separators=(",", ":")),
            "receipt_id": (receipt or {}).get("receipt_id"),
            "grid": carbon.get("grid_g_per_kwh"),
            "co2_g": carbon.get("co2_g"),
            "energy_j": energy.get("energy_j"),
            "now": time.time() if now is None else now,
            "batch": line.batch_id,
            "line": line.line,
            "claim": line.claim,
        }
        with self._db.transaction() as conn:
            if conn.execute(_FINISH, params).rowcount == 0:
                return False
            if tokens is not None and (tokens.input or tokens.cached or tokens.output):
                conn.execute(
                    _COUNT_TOKENS,
                    {
                        "input": tokens.input,
                        "cached": tokens.cached,
                        "output": tokens.output,
                        "batch": line.batch_id,
                    },
                )
            return True

    def renew(self, claim: str, lease_s: float, now: float | None = None) -> int:
        """Extend the leases of every line ``claim`` still runs (its runner is alive)."""
        now = time.time() if now is None else now
        with self._db.connection() as conn:
            cur = conn.execute(
                "UPDATE batch_lines SET claimed_until = :until "
                "WHERE claim = :claim AND status = 'running'",
                {"claim": claim, "until": now + lease_s},
            )
            return cur.rowcount

    def release(self, claim: str, line: Claimed | None = None) -> int:
        """Put ``claim``'s running lines (or one of them) back to pending: a runner stopping,
        or a line that could not run now. How many went back."""
        where = "claim = :claim AND status = 'running'"
        params: dict[str, Any] = {"claim": claim}
        if line is not None:
            where += " AND batch_id = :batch AND line = :line"
            params.update(batch=line.batch_id, line=line.line)
        with self._db.connection() as conn:
            cur = conn.execute(
                "UPDATE batch_lines SET status = 'pending', claim = NULL, claimed_until = NULL, "
                f"attempts = attempts - 1 WHERE {where}",
                params,
            )
            return cur.rowcount

    def fail_unfinished(
        self, batch_id: str, output_of: Callable[[str], dict[str, Any]], now: float | None = None
    ) -> int:
        """Mark every line not finished as failed with ``output_of(custom_id)`` (a batch that
        expired); lines still leased are left to their runner."""
        now = time.time() if now is None else now
        with self._db.connection() as conn:
            rows = conn.execute(
                f"SELECT line, custom_id FROM batch_lines WHERE batch_id = :batch AND {_CLAIMABLE}",
                {"batch": batch_id, "now": now},
            ).fetchall()
            for r in rows:
                conn.execute(
                    "UPDATE batch_lines SET status = 'failed', output = :output, "
                    f"finished_at = :now WHERE batch_id = :batch AND line = :line AND {_CLAIMABLE}",
                    {
                        "output": json.dumps(output_of(r["custom_id"]), separators=(",", ":")),
                        "now": now,
                        "batch": batch_id,
                        "line": r["line"],
                    },
                )
        return len(rows)

    def outputs(self, batch_id: str, *, ok: bool) -> list[str]:
        """The finished lines' output lines (done, or failed), in input order."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT output FROM batch_lines WHERE batch_id = ? AND status = ? ORDER BY line",
                (batch_id, "done" if ok else "failed"),
            ).fetchall()
        return [str(r["output"]) for r in rows]

    def lines(self, batch_id: str) -> list[Row]:
        """Every line's state (tests, the plan's totals)."""
        with self._db.connection() as conn:
            return conn.execute(
                "SELECT line, custom_id, status, attempts, receipt_id, grid_g_per_kwh, co2_g, "
                "energy_j, finished_at FROM batch_lines WHERE batch_id = ? ORDER BY line",
                (batch_id,),
            ).fetchall()
