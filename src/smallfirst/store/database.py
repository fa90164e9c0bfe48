"""Which backend a ``database_url`` names, opened: a SQLite file or a PostgreSQL database.

``sqlite:PATH`` (or ``sqlite:///PATH``, or a plain path) is SQLite, ``postgresql://...`` (or ``postgres://``)
PostgreSQL; anything else is a :class:`~smallfirst.errors.ConfigError`. The stores accept
an open backend (shared), or a path or URL (a backend of their own; a path is how they
were opened before PostgreSQL existed), through :func:`backend_of`.

This module chooses and opens; it runs no query of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smallfirst.errors import ConfigError
from smallfirst.store.backend import Backend, mask_url
from smallfirst.store.schema import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS
from smallfirst.store.sqlite_backend import SqliteBackend, Synchronous
from smallfirst.store.sqlite_backend import read_version as sqlite_version

__all__ = ["SchemaStatus", "backend_of", "open_backend", "schema_status"]


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a database's schema stands against this smallfirst's migrations."""

    url: str  # password masked
    dialect: str
    version: int
    latest: int

    @property
    def pending(self) -> int:
        return max(self.latest - self.version, 0)


def open_backend(url: str | Path, synchronous: Synchronous = "NORMAL") -> Backend:
    """Open (and migrate) the database ``url`` names."""
    if isinstance(url, str) and url.startswith(("postgresql://", "postgres://")):
        from smallfirst.store.postgres import PostgresBackend

        return PostgresBackend(url)
    return SqliteBackend(_sqlite_path(url), synchronous)


def schema_status(url: str | Path) -> SchemaStatus:
    """The schema version of ``url``'s database, read without migrating or creating it."""
    if isinstance(url, str) and url.startswith(("postgresql://", "postgres://")):
        from smallfirst.store.postgres import read_version

        return SchemaStatus(
            mask_url(url), "postgresql", read_version(url), len(POSTGRES_MIGRATIONS)
        )
    path = _sqlite_path(url)
    return SchemaStatus(f"sqlite:{path}", "sqlite", sqlite_version(path), len(SQLITE_MIGRATIONS))


def _sqlite_path(url: str | Path) -> Path:
    if isinstance(url, Path):
        return url
    if url.startswith("sqlite:"):  # sqlite:PATH, or sqlite:///ABSOLUTE as SQLAlchemy writes it
        return Path(url.removeprefix("sqlite:").removeprefix("//")).expanduser()
    if "://" in url:
        raise ConfigError(
            f"database_url {mask_url(url)!r}: use sqlite:PATH or postgresql://USER@HOST/DB"
        )
    return Path(url).expanduser()


def backend_of(
    db: Backend | Path | str, synchronous: Synchronous = "NORMAL"
) -> tuple[Backend, bool]:
    """``db`` (a backend, a SQLite path or a URL) as a backend, and whether it was opened
    here (then its store closes it)."""
    if isinstance(db, Path | str):
        return open_backend(db, synchronous), True
    return db, False
