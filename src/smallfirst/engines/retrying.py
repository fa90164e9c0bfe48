"""Opening a remote request, retried while nothing has been read: 429, 5xx, lost connections.

A 429, a 5xx, a connection that could not be made (refused, or not made within the connect
timeout) or one that dropped before any response came (a keep-alive connection the upstream
closed as it was reused) is tried again up to ``remote_retries`` times, waiting an
exponential backoff with jitter (``remote_retry_backoff_s`` doubled per retry, times a random
factor in [0.5, 1]) or, when the upstream sent ``Retry-After`` (seconds or an HTTP date),
exactly that long. All the waiting of one request fits in ``remote_retry_budget_s``: a wait
that would pass it is not begun, and the last failure is raised as its domain error. A 4xx
other than 429 is the request's fault and is raised at once
(:class:`~smallfirst.errors.UpstreamRefusedError`).

The caller gets a response whose status is below 400 and whose body is unread; this module
never reads a successful body, so nothing is retried once a byte of an answer has been seen.
It does not choose models (fallbacks are the server's) and keeps no state between requests.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from typing import Any

import httpx

from smallfirst.errors import (
    UpstreamError,
    UpstreamRateLimitedError,
    UpstreamRefusedError,
    UpstreamUnavailableError,
)
from smallfirst.settings import Settings

__all__ = ["Retrying", "error_message", "retry_after_s"]

log = logging.getLogger(__name__)

RETRY_AFTER_CAP_S = 3600.0  # a Retry-After past an hour is treated as "not soon"


def error_message(body: bytes) -> str:
    """The upstream's error message from an OpenAI-style error body, else the body's start."""
    try:
        err = json.loads(body).get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    except (ValueError, AttributeError):
        pass
    return body.decode("utf-8", errors="replace")[:500] or "no message"


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


class Retrying:
    """Sends one remote request until it gets a usable response or the bounds run out."""

    def __init__(self, name: str, client: httpx.AsyncClient, settings: Settings) -> None:
        self.name = name
        self.client = client
        self.retries = settings.remote_retries
        self.budget_s = settings.remote_retry_budget_s
        self.backoff_s = settings.remote_retry_backoff_s
        self.random = random.Random()

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0-based) when the upstream named none."""
        return float(self.backoff_s * 2.0**retry * self.random.uniform(0.5, 1.0))

    async def open(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """A response with status below 400, its body unread (the caller closes it)."""
        deadline = time.monotonic() + self.budget_s
        retry = 0
        while True:
            error, wait = await self._try(path, body)
            if isinstance(error, httpx.Response):
                return error
            if wait is None:
                wait = self.backoff(retry)
            if retry >= self.retries or time.monotonic() + wait > deadline:
                raise error
            log.info("%s: %s; retry %d in %.2f s", self.name, error.message, retry + 1, wait)
            await asyncio.sleep(wait)
            retry += 1

    async def _try(
        self, path: str, body: dict[str, Any]
    ) -> tuple[httpx.Response | UpstreamError, float | None]:
        """One send: the response, or the retryable error with the wait the upstream asked."""
        request = self.client.build_request("POST", path, json=body)
        try:
            response = await self.client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return UpstreamUnavailableError(f"{self.name}: upstream unreachable: {exc}"), None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            # the connection dropped before any response: most often a pooled keep-alive
            # connection the upstream closed as it was reused; sent again, as OpenAI's
            # own client does
            return UpstreamUnavailableError(f"{self.name}: connection lost: {exc}"), None
        status = response.status_code
        if status < 400:
            return response, None
        try:
            detail = error_message(await response.aread())
        finally:
            await response.aclose()
        wait = retry_after_s(response.headers.get("retry-after"))
        if status == 429:
            message = f"{self.name}: upstream is rate limiting: {detail}"
            return UpstreamRateLimitedError(message, wait), wait
        if status >= 500:
            return UpstreamError(f"{self.name}: upstream answered {status}: {detail}"), wait
        raise UpstreamRefusedError(f"{self.name}: upstream refused the request: {detail}", status)
