"""Which backend a ``database_url`` names, opened: a SQLite file or a PostgreSQL database.

``sqlite:PATH`` (or a plain path) is SQLite, ``postgresql://...`` (or ``postgres://``)
PostgreSQL; anything else is a :class:`~smallfirst.errors.ConfigError`. The stores accept
an open backend (shared), or a path or URL (a backend of their own; a path is how they
were opened before PostgreSQL existed), through :func:`backend_of`.

This module chooses and opens; it runs no query of its own.
"""

from __future__ import annotations

from pathlib import Path

from smallfirst.errors import ConfigError
from smallfirst.store.backend import Backend, mask_url
from smallfirst.store.sqlite_backend import SqliteBackend, Synchronous

__all__ = ["backend_of", "open_backend"]


def open_backend(url: str | Path, synchronous: Synchronous = "NORMAL") -> Backend:
    """Open (and migrate) the database ``url`` names."""
    if isinstance(url, Path):
        return SqliteBackend(url, synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        from smallfirst.store.postgres import PostgresBackend

        return PostgresBackend(url)
    if url.startswith("sqlite:"):
        return SqliteBackend(Path(url.removeprefix("sqlite:")).expanduser(), synchronous)
    if "://" in url:
        raise ConfigError(
            f"database_url {mask_url(url)!r}: use sqlite:PATH or postgresql://USER@HOST/DB"
        )
    return SqliteBackend(Path(url).expanduser(), synchronous)


def backend_of(
    db: Backend | Path | str, synchronous: Synchronous = "NORMAL"
) -> tuple[Backend, bool]:
    """``db`` (a backend, a SQLite path or a URL) as a backend, and whether it was opened
    here (then its store closes it)."""
    if isinstance(db, Path | str):
        return open_backend(db, synchronous), True
    return db, False
