"""``/smallfirst/v1/keys``: the admin HTTP API over API keys (what ``smallfirst keys`` does).

* ``GET /smallfirst/v1/keys``: every key, with its budgets (spent, reserved, left);
* ``POST /smallfirst/v1/keys`` ``{"name": ..., "budget_usd": ..., ...}``: a new key; the
  answer carries its ``secret``, the only time it is shown;
* ``GET /smallfirst/v1/keys/{key}``: one key, by id or name;
* ``POST /smallfirst/v1/keys/{key}/revoke`` and ``.../rotate`` (a new secret, the same key).

Only admin keys reach it once keys exist (:mod:`.auth`). ``expires`` is an ISO-8601 date or
time (local time unless it says), unix seconds, or a duration from now (``30d``). This module does
not authenticate and stores nothing itself.
"""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from smallfirst.server.receipts_api import parse_time
from smallfirst.store.budgets import WINDOWS
from smallfirst.store.keys import KeySpec, KeyStore

__all__ = ["KeyCreate", "parse_expiry", "router"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(m|h|d|w)$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_expiry(value: str | None, now: float | None = None) -> float | None:
    """Unix seconds from an ISO-8601 date or time, unix seconds, or a duration from now."""
    if value is None or value.strip() == "":
        return None
    match = _DURATION.match(value.strip())
    if match:
        return (time.time() if now is None else now) + float(match[1]) * _UNIT_S[match[2]]
    return parse_time(value, "expires")  # a time, as the receipts API's filters read one


class KeyCreate(BaseModel):
    """The body of ``POST /smallfirst/v1/keys``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:@-]+$")
    budget_usd: float | None = Field(default=None, ge=0)
    budget_wh: float | None = Field(default=None, ge=0)
    budget_co2_g: float | None = Field(default=None, ge=0)
    window: str = Field(default="total", pattern="^(" + "|".join(WINDOWS) + ")$")
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    models: list[str] | None = None
    expires: str | None = None
    admin: bool = False

    def spec(self) -> KeySpec:
        return KeySpec(
            name=self.name,
            budget_usd=self.budget_usd,
            budget_wh=self.budget_wh,
            budget_co2_g=self.budget_co2_g,
            window=self.window,
            rpm=self.rpm,
            tpm=self.tpm,
            models=tuple(p.strip() for p in self.models or () if p.strip()),
            expires_at=parse_expiry(self.expires),
            admin=self.admin,
        )


def router(keys: KeyStore) -> APIRouter:
    api = APIRouter(prefix="/smallfirst/v1/keys", include_in_schema=False)

    @api.get("")
    def list_keys() -> dict[str, Any]:
        return {"object": "list", "data": [k.public() for k in keys.list()]}

    @api.post("", status_code=201)
    def create(body: KeyCreate) -> dict[str, Any]:
        key, secret = keys.create(body.spec())
        return {**key.public(), "secret": secret}

    @api.get("/{key}")
    def show(key: str) -> dict[str, Any]:
        return keys.get(key).public()

    @api.post("/{key}/revoke")
    def revoke(key: str) -> dict[str, Any]:
        return keys.revoke(key).public()

    @api.post("/{key}/rotate")
    def rotate(key: str) -> dict[str, Any]:
        found, secret = keys.rotate(key)
        return {**found.public(), "secret": secret}

    return api
