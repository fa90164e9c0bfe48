"""Uploaded and generated files (OpenAI's Files API): metadata in the store, bytes on disk.

A file's row says who owns it (the API key that made it; none in open mode), its name,
purpose, size and how many lines it holds; its contents live in the data directory as
``<data_dir>/files/<id>``, written to a temporary name, flushed and renamed into place
before the row exists, so a row never names a half-written file. Replicas sharing
PostgreSQL must share that directory too.

Scoping: a caller with a key sees only its own files; the open gateway (no key) sees all.
Someone else's file is answered as missing, never as forbidden, so ids cannot be probed.

Expiry: a file may have an ``expires_at`` (OpenAI's ``expires_after``). From then on it is
gone to every caller, exactly as an unknown id (not got, read, listed or deleted); its row
and bytes stay until a sweep removes them (:meth:`BatchStore.sweep_files
<smallfirst.store.batches.BatchStore.sweep_files>`, which keeps the input of an unfinished
batch until it ends, then :meth:`FileStore.discard` for the bytes). Time is the store's
``clock``, so tests can move it.

This module does not check what a file holds (``smallfirst.server.batch_input`` does) and
does not know HTTP.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smallfirst.errors import NotFoundError
from smallfirst.store.backend import Backend, Row

__all__ = ["FileRecord", "FileStore", "new_file_id", "owned"]


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: str
    key_id: str | None
    filename: str
    purpose: str
    bytes: int
    created_at: float
    lines: int
    expires_at: float | None = None  # None: never

    def public(self) -> dict[str, Any]:
        """OpenAI's ``file`` object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": int(self.created_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None if self.expires_at is None else int(self.expires_at),
            "status_details": None,
        }


def _record(row: Row) -> FileRecord:
    return FileRecord(
        row["id"],
        row["key_id"],
        row["filename"],
        row["purpose"],
        int(row["bytes"]),
        row["created_at"],
        int(row["lines"]),
        row["expires_at"],
    )


# rows not yet expired at :now
_LIVE = "(expires_at IS NULL OR expires_at > :now)"


def owned(key_id: str | None) -> tuple[str, dict[str, Any]]:
    """A WHERE fragment limiting rows to ``key_id``'s (no key: every row)."""
    if key_id is None:
        return "1 = 1", {}
    return "key_id = :owner", {"owner": key_id}


class FileStore:
    """The files of one database, their bytes under ``data_dir``/files."""

    def __init__(self, db: Backend, data_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self.root = data_dir / "files"
        self.clock = clock

    def path(self, file_id: str) -> Path:
        return self.root / file_id

    def add(
        self,
        content: bytes,
        *,
        filename: str,
        purpose: str,
        key_id: str | None,
        lines: int,
        file_id: str | None = None,
        now: float | None = None,
        expires_after_s: float | None = None,
    ) -> FileRecord:
        """Write ``content`` and its row, gone ``expires_after_s`` after its creation (None:
        never). With ``file_id`` given (a batch's output, whose id is fixed so that
        finishing twice is harmless) an existing row is kept as it is."""
        file_id = file_id or new_file_id()
        self._write(file_id, content)
        created = self.clock() if now is None else now
        row = {
            "id": file_id,
            "key_id": key_id,
            "filename": filename,
            "purpose": purpose,
            "bytes": len(content),
            "created_at": created,
            "lines": lines,
            "expires_at": None if expires_after_s is None else created + expires_after_s,
        }
        with self._db.connection() as conn:
            conn.execute(
                f"INSERT INTO files ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)}) "
                "ON CONFLICT (id) DO NOTHING",
                row,
            )
            kept = conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        return _record(kept)

    def _write(self, file_id: str, content: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{file_id}.{secrets.token_hex(4)}.part"
        with tmp.open("wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path(file_id))

    def get(self, file_id: str, key_id: str | None) -> FileRecord:
        """``file_id``, if ``key_id`` may see it and it has not expired."""
        where, params = owned(key_id)
        with self._db.connection() as conn:
            row = conn.execute(
                f"SELECT * FROM files WHERE id = :id AND {where} AND {_LIVE}",
                {"id": file_id, "now": self.clock(), **params},
            ).fetchone()
        if row is None:
            raise NotFoundError(f"No such File object: {file_id}", param="file_id")
        return _record(row)

    def page(
        self,
        key_id: str | None,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 10000,
        newest_first: bool = True,
    ) -> list[FileRecord]:
        """Unexpired files in creation order (newest first unless told), after the file
        ``after``."""
        where, params = owned(key_id)
        where += f" AND {_LIVE}"
        params = {**params, "limit": limit, "now": self.clock()}
        if purpose is not None:
            where += " AND purpose = :purpose"
            params["purpose"] = purpose
        op, order = ("<", "DESC") if newest_first else (">", "ASC")
        if after is not None:
            where += f" AND seq {op} (SELECT seq FROM files WHERE id = :after)"
            params["after"] = after
        with self._db.connection() as conn:
            rows = conn.execute(
                f"SELECT * FROM files WHERE {where} ORDER BY seq {order} LIMIT :limit", params
            ).fetchall()
        return [_record(r) for r in rows]

    def read(self, file_id: str, key_id: str | None) -> bytes:
        self.get(file_id, key_id)  # owned, not deleted, not expired
        try:
            return self.path(file_id).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"The contents of {file_id} are gone from the data directory", param="file_id"
            ) from None

    def read_span(self, file_id: str, offset: int, length: int) -> bytes:
        """``length`` bytes of a file from ``offset`` (a batch's input line), unscoped."""
        with self.path(file_id).open("rb") as f:
            f.seek(offset)
            return f.read(length)

    def delete(self, file_id: str, key_id: str | None) -> None:
        record = self.get(file_id, key_id)
        with self._db.connection() as conn:
            conn.execute("DELETE FROM files WHERE id = ?", (record.id,))
        self.discard(record.id)

    def discard(self, file_id: str) -> None:
        """Remove a file's bytes (its row already gone: deleted, or swept once expired)."""
        with contextlib.suppress(FileNotFoundError):
            self.path(file_id).unlink()
