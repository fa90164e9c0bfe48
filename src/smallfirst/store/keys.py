"""API keys in the store: create, look up by secret, list, revoke, rotate.

A key's secret is ``sf-<hex id>-<random>``. It is shown once, when it is made; the store
keeps only an HMAC-SHA256 of it under a server secret that lives in a file of the data
directory (``keys.secret``, mode 0600, made on first use), never in the database, so a
copy of the database alone cannot be used to check guesses. A secret is found by the id
it carries and its hash compared in constant time.

A key has a name (unique), an expiry, an admin flag, the model patterns it may use
(``fnmatch`` globs; none: every model), requests and tokens per minute, and budgets in
USD, Wh and gCO2 over a window; the budgets' spending is :mod:`.budgets`'s.

This module does not decide who may do what (``smallfirst.server.auth`` does) and never
logs or returns a secret except the one :meth:`KeyStore.create` and
:meth:`KeyStore.rotate` hand back.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smallfirst.errors import InvalidKeyError, InvalidRequestError, NotFoundError
from smallfirst.store.backend import Backend, Row
from smallfirst.store.budgets import WINDOWS, Amounts, BudgetBook
from smallfirst.store.database import backend_of
from smallfirst.store.ratelimits import RateBook
from smallfirst.store.sqlite_backend import Synchronous

__all__ = ["SECRET_FILE", "ApiKey", "KeySpec", "KeyStore", "server_secret"]

log = logging.getLogger(__name__)

SECRET_FILE = "keys.secret"
PREFIX = "sf-"


def server_secret(data_dir: Path) -> bytes:
    """The HMAC key of this data directory, made (0600) on first use."""
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by others; chmod 600 it", path)
    text = path.read_text().strip()
    if len(text) < 32:
        raise InvalidKeyError(f"{path} is damaged: it holds no server secret")
    return bytes.fromhex(text) if all(c in "0123456789abcdef" for c in text) else text.encode()


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What ``keys create`` is told (budgets None: unlimited)."""

    name: str
    budget_usd: float | None = None
    budget_wh: float | None = None
    budget_co2_g: float | None = None
    window: str = "total"
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] = ()
    expires_at: float | None = None
    admin: bool = False


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    id: str
    name: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    admin: bool
    models: tuple[str, ...]
    rpm: int | None
    tpm: int | None
    window: str
    budget: Amounts  # None figures: no budget on that unit
    window_start: float
    spent: Amounts
    reserved: Amounts

    def allows(self, model: str) -> bool:
        """Whether this key may use ``model`` (no patterns: every model)."""
        return not self.models or any(fnmatch.fnmatchcase(model, p) for p in self.models)

    def public(self) -> dict[str, Any]:
        """The key as the admin API and ``keys show --json`` show it (never the secret)."""
        return {
            "id": self.id,
            "object": "api_key",
            "name": self.name,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "admin": self.admin,
            "models": list(self.models) or None,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "window": self.window,
            "window_start": self.window_start,
            "budgets": BudgetBook.report(self),
        }


def _row_key(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        admin=bool(row["admin"]),
        models=tuple(json.loads(row["models"])) if row["models"] else (),
        rpm=row["rpm"],
        tpm=row["tpm"],
        window=row["budget_window"],
        budget=Amounts(row["budget_usd"], row["budget_wh"], row["budget_co2_g"]),
        window_start=row["window_start"],
        spent=Amounts(row["spent_usd"], row["spent_wh"], row["spent_co2_g"]),
        reserved=Amounts(row["reserved_usd"], row["reserved_wh"], row["reserved_co2_g"]),
    )


def _split(secret: str) -> str | None:
    """The key id a secret carries, or None when it is not shaped like one of ours."""
    if not secret.startswith(PREFIX):
        return None
    parts = secret[len(PREFIX) :].split("-", 1)
    if len(parts) != 2 or len(parts[0]) != 12 or not parts[1]:
        return None
    return "key_" + parts[0]


class KeyStore:
    """The keys of one database, hashed under one data directory's server secret."""

    def __init__(
        self, db: Backend | Path | str, data_dir: Path, synchronous: Synchronous = "NORMAL"
    ) -> None:
        self._db, self._owned = backend_of(db, synchronous)
        self._data_dir = data_dir
        self._secret: bytes | None = None  # read on first need: open mode never makes it
        self._closed_for_good = False  # a key exists (see any)
        self.budgets = BudgetBook(self._db)
        self.rates = RateBook(self._db)  # shared rate windows (used on PostgreSQL)
        self.dialect = self._db.dialect

    def _hash(self, secret: str) -> str:
        if self._secret is None:
            self._secret = server_secret(self._data_dir)
        return hmac.new(self._secret, secret.encode(), hashlib.sha256).hexdigest()

    def any(self) -> bool:
        """Whether any key was ever made here (revoked ones count: the gateway stays closed).

        Keys are never deleted, so once true it stays true and is not asked again. While
        false it is asked on every call, on purpose: in open mode this query is the request's
        store check, so a lost database is a 503 before any model runs (never an answer whose
        receipt cannot be stored); do not cache a false."""
        if self._closed_for_good:
            return True
        with self._db.connection() as conn:
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM keys) AS found").fetchone()
        found = bool(row["found"])
        self._closed_for_good = found
        return found

    def create(self, spec: KeySpec, now: float | None = None) -> tuple[ApiKey, str]:
        """Store a new key; returns it and its secret (the only time the secret exists)."""
        if spec.window not in WINDOWS:
            raise InvalidRequestError(f"window must be one of {', '.join(WINDOWS)}", param="window")
        if not spec.name.strip():
            raise InvalidRequestError("a key needs a name", param="name")
        hex_id = secrets.token_hex(6)
        secret = f"{PREFIX}{hex_id}-{secrets.token_urlsafe(24)}"
        key_id = "key_" + hex_id
        now = time.time() if now is None else now
        row = {
            "id": key_id,
            "name": spec.name,
            "hash": self._hash(secret),
            "created_at": now,
            "expires_at": spec.expires_at,
            "admin": int(spec.admin),
            "models": json.dumps(list(spec.models)) if spec.models else None,
            "rpm": spec.rpm,
            "tpm": spec.tpm,
            "budget_window": spec.window,
            "budget_usd": spec.budget_usd,
            "budget_wh": spec.budget_wh,
            "budget_co2_g": spec.budget_co2_g,
            "window_start": BudgetBook.window_start(spec.window, now),
        }
        # the name's uniqueness decided by the database, the same way on both backends
        insert = (
            f"INSERT INTO keys ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)}) "
            "ON CONFLICT (name) DO NOTHING RETURNING id"
        )
        with self._db.connection() as conn:
            made = conn.execute(insert, row).fetchall()  # all: SQLite finishes the statement
        if not made:
            raise InvalidRequestError(
                f"a key named {spec.name!r} already exists", param="name"
            ) from None
        return self.get(key_id), secret

    def get(self, id_or_name: str) -> ApiKey:
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT * FROM keys WHERE id = ? OR name = ?", (id_or_name, id_or_name)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"No key {id_or_name!r}", param="key")
        return _row_key(row)

    def list(self) -> list[ApiKey]:
        with self._db.connection() as conn:
            rows = conn.execute("SELECT * FROM keys ORDER BY created_at").fetchall()
        return [_row_key(r) for r in rows]

    def names(self) -> dict[str, str]:
        """Key id → name of every key (the bound on /metrics' ``key`` label)."""
        with self._db.connection() as conn:
            rows = conn.execute("SELECT id, name FROM keys").fetchall()
        return {r["id"]: r["name"] for r in rows}

    def authenticate(self, secret: str, now: float | None = None) -> ApiKey:
        """The live key of ``secret``; :class:`InvalidKeyError` saying why not otherwise."""
        key_id = _split(secret)
        row = None
        if key_id is not None:
            with self._db.connection() as conn:
                row = conn.execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
        # hash even when there is no such key, so a miss costs what a hit costs
        digest = self._hash(secret)
        if row is None or not hmac.compare_digest(digest, row["hash"]):
            raise InvalidKeyError("Incorrect API key provided.")
        key = _row_key(row)
        now = time.time() if now is None else now
        if key.revoked_at is not None:
            raise InvalidKeyError(f"This API key ({key.name}) has been revoked.")
        if key.expires_at is not None and key.expires_at <= now:
            raise InvalidKeyError(f"This API key ({key.name}) has expired.")
        return key

    def revoke(self, id_or_name: str, now: float | None = None) -> ApiKey:
        key = self.get(id_or_name)
        with self._db.connection() as conn:
            conn.execute(
                "UPDATE keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                (time.time() if now is None else now, key.id),
            )
        return self.get(key.id)

    def rotate(self, id_or_name: str) -> tuple[ApiKey, str]:
        """A new secret for the same key (id, budgets and spending kept); the old one stops
        working at once."""
        key = self.get(id_or_name)
        hex_id = key.id.removeprefix("key_")
        secret = f"{PREFIX}{hex_id}-{secrets.token_urlsafe(24)}"
        with self._db.connection() as conn:
            conn.execute("UPDATE keys SET hash = ? WHERE id = ?", (self._hash(secret), key.id))
        return self.get(key.id), secret

    def close(self) -> None:
        if self._owned:
            self._db.close()
