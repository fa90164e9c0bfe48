"""Copy an installation's database to another backend (SQLite to PostgreSQL, or back),
idempotently: running it again copies only what the target lacks.

Rows are matched by what identifies them: a receipt, key, file or batch by its id, a batch
line by its batch and number, an evaluation run and result by their primary keys (``ON
CONFLICT DO NOTHING``, so a row the target already has is kept as the target has it,
spending included); an overhead row, which has no id of its own, by its time, kind and
model. Row numbers (``seq``) are the target's
own. Rows are read in pages and written a page per transaction.

Open budget reservations are not copied, and keys arrive with nothing reserved: a copy is
made with the old gateway stopped, so what it still held was held by requests that will
never settle. Key hashes are checked under the data directory's ``keys.secret``; the
gateways on the target need that same file.

This module moves rows; it does not open databases from URLs (:mod:`.database` does) nor
print anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from smallfirst.store.backend import Backend, Connection, Row

__all__ = ["TABLES", "Table", "copy_database"]

PAGE = 1000


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    order: str  # a unique order to page by
    conflict: tuple[str, ...] = ()  # a unique key the target enforces
    match: tuple[str, ...] = ()  # no unique key: a row with these values is already there
    skip: tuple[str, ...] = ()  # columns the target numbers itself
    zero: tuple[str, ...] = ()  # columns copied as 0


TABLES = (
    Table("receipts", "seq", conflict=("id",), skip=("seq",)),
    Table("overhead", "seq", match=("created_at", "kind", "model"), skip=("seq",)),
    Table("eval_runs", "run_id", conflict=("run_id",)),
    Table(
        "eval_results",
        "run_id, benchmark, item_id, model",
        conflict=("run_id", "benchmark", "item_id", "model"),
    ),
    Table("keys", "id", conflict=("id",), zero=("reserved_usd", "reserved_wh", "reserved_co2_g")),
    # the Files and Batch API's rows; the files' bytes stay in the data directory
    Table("files", "seq", conflict=("id",), skip=("seq",)),
    Table("batches", "seq", conflict=("id",), skip=("seq",)),
    Table("batch_lines", "batch_id, line", conflict=("batch_id", "line")),
)


def _count(conn: Connection, table: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) AS n FROM {table}").fetchone()["n"])


def _write(conn: Connection, table: Table, rows: list[Row]) -> None:
    columns = [c for c in rows[0] if c not in table.skip]
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    )
    if table.conflict:
        sql += f" ON CONFLICT ({', '.join(table.conflict)}) DO NOTHING"
    values = [[0.0 if c in table.zero else row[c] for c in columns] for row in rows]
    if not table.match:
        conn.executemany(sql, values)
        return
    where = " AND ".join(f"{c} = ?" for c in table.match)
    for row, row_values in zip(rows, values, strict=True):
        found = conn.execute(
            f"SELECT 1 AS found FROM {table.name} WHERE {where}", [row[c] for c in table.match]
        ).fetchone()
        if found is None:
            conn.execute(sql, row_values)


def copy_database(source: Backend, target: Backend) -> dict[str, dict[str, int]]:
    """Copy every table of :data:`TABLES`; per table, rows read and rows the target gained."""
    out: dict[str, dict[str, int]] = {}
    for table in TABLES:
        with target.connection() as conn:
            before = _count(conn, table.name)
        read = 0
        while True:
            with source.reader() as conn:
                rows = conn.execute(
                    f"SELECT * FROM {table.name} ORDER BY {table.order} LIMIT ? OFFSET ?",
                    (PAGE, read),
                ).fetchall()
            if not rows:
                break
            with target.transaction() as conn:
                _write(conn, table, rows)
            read += len(rows)
        with target.connection() as conn:
            out[table.name] = {"read": read, "added": _count(conn, table.name) - before}
    return out
