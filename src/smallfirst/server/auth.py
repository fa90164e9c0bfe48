"""Who may call what: API keys on the gateway's routes, as one ASGI middleware.

Open mode: while no key has ever been made in the store, every route is open, as before
keys existed (the loopback quickstart). :func:`check_bind` refuses to start on a
non-loopback host in that state unless ``allow_anonymous`` says so.

Once a key exists (revoked ones count), a request needs ``Authorization: Bearer <secret>``:

* ``/v1/*``, ``/smallfirst/v1/receipts`` and ``/smallfirst/v1/summary``: any live key (a
  client key sees only its own receipts and summary: :func:`caller_scope`);
* ``/smallfirst/v1/keys``, ``/smallfirst/v1/dashboard/*`` and ``/metrics``: admin keys;
* ``/health``, the dashboard page and its static files, ``/openapi.json`` and ``/docs``:
  open (the page asks for a key and sends it with its API calls).

A missing, unknown, expired or revoked key is a 401 ``invalid_api_key`` saying which; a
client key on an admin route is a 401 ``insufficient_permissions`` (as OpenAI answers a
restricted key). The key found is put on the request (``request.state.api_key``); when
the response is over the middleware releases whatever budget reservation the request
left open (:mod:`.access`), so a failure or a vanished client never holds budget, and it
adds the key's rate-limit headers to every response (:mod:`.ratelimit`).

Secrets are never logged or echoed. This module does not count budgets or choose models.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smallfirst.errors import (
    AccessError,
    ConfigError,
    InvalidKeyError,
    ScopeError,
    StoreUnavailableError,
)
from smallfirst.server.errors import describe
from smallfirst.server.offload import Offload
from smallfirst.settings import Settings
from smallfirst.store.keys import ApiKey, KeyStore

__all__ = [
    "ADMIN_PREFIXES",
    "CLIENT_PREFIXES",
    "AuthMiddleware",
    "caller_scope",
    "check_bind",
    "is_loopback",
]

CLIENT_PREFIXES = ("/v1/", "/smallfirst/v1/receipts", "/smallfirst/v1/summary")
ADMIN_PREFIXES = ("/smallfirst/v1/keys", "/smallfirst/v1/dashboard/", "/metrics")
NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or an unparsable address: assume it is reachable from outside


def check_bind(settings: Settings, keys: KeyStore) -> None:
    """Refuse to serve a non-loopback host with no key unless ``allow_anonymous``."""
    if is_loopback(settings.host) or settings.allow_anonymous or keys.any():
        return
    raise ConfigError(
        f"refusing to serve {settings.host} with no API key: anyone who can reach the port "
        "could use every model and read every receipt. Create one first "
        "(smallfirst keys create --name admin --admin), or pass --allow-anonymous "
        "(allow_anonymous = true) to serve it open on purpose."
    )


def _need(path: str) -> str | None:
    if path.startswith(ADMIN_PREFIXES):
        return "admin"
    if path.startswith(CLIENT_PREFIXES):
        return "key"
    return None


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text: str = value.decode("latin-1").strip()
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    return None


def caller_scope(request_state: Any) -> str | None:
    """The key id a request's receipts are limited to: None for an admin key or open mode."""
    key: ApiKey | None = getattr(request_state, "api_key", None)
    return None if key is None or key.admin else key.id


class AuthMiddleware:
    """Authenticates by path (see the module), then releases the request's reservation."""

    def __init__(self, app: ASGIApp, keys: KeyStore, offload: Offload, limiter: Any = None) -> None:
        self.app = app
        self.keys = keys
        self.offload = offload  # the store is read off the event loop
        self.limiter = limiter  # server/ratelimit's: .headers(key, entry) and .blocking

    def _caller(self, scope: Scope, need: str) -> ApiKey | None:
        """Blocking: the request's key, None in open mode (no key was ever made)."""
        if not self.keys.any():
            return None
        return self._key(scope, need)

    def _key(self, scope: Scope, need: str) -> ApiKey:
        secret = _bearer(scope)
        if not secret:
            raise InvalidKeyError(NO_KEY)
        key = self.keys.authenticate(secret)
        if need == "admin" and not key.admin:
            raise ScopeError(
                f"The API key {key.name} is not an admin key; this endpoint needs one."
            )
        return key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        need = _need(scope["path"])
        # in open mode keys.any() reads the database on every /v1 request: a database that
        # is down is a 503 here, before any model runs, with a key or without one
        try:
            key = None if need is None else await self.offload(self._caller, scope, need)
        except (AccessError, StoreUnavailableError) as exc:  # the latter: database down, 503
            wire = describe(exc)
            assert wire is not None
            await wire.response()(scope, receive, send)
            return
        if key is None:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["api_key"] = key
        limiter = self.limiter

        async def send_with_limits(message: Message) -> None:
            limited = key.rpm is not None or key.tpm is not None
            if message["type"] == "http.response.start" and limiter is not None and limited:
                headers = list(message.get("headers", ()))
                headers.extend(await self._limit_headers(key, state.get("rate_entry")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_limits)
        finally:
            reservation = state.get("reservation")
            if reservation is not None and reservation.is_open:  # no receipt settled it
                with anyio.CancelScope(shield=True):  # a hang-up must not keep it held
                    await self.offload(reservation.release)

    async def _limit_headers(self, key: ApiKey, entry: Any) -> list[tuple[bytes, bytes]]:
        """The key's rate-limit headers: from the window the request was admitted into, or
        from the store (off the event loop) when the limiter must ask it."""
        limiter = self.limiter
        if limiter.blocking and (entry is None or entry.window is None):
            headers: list[tuple[bytes, bytes]] = await self.offload(limiter.headers, key, entry)
            return headers
        return list(limiter.headers(key, entry))
