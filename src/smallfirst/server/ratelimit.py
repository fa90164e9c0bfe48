"""Requests and tokens per minute per API key: a sliding window, in this process's memory.

Each admitted completion request of a key with ``rpm`` or ``tpm`` is one entry (when, and
its tokens) in that key's last minute. A request that would make more than ``rpm`` entries,
or more than ``tpm`` tokens, in the last 60 s is refused with 429 ``rate_limit_exceeded``
and a ``Retry-After`` for when enough of the window will have gone by. Tokens are counted
as OpenAI estimates them before a call (a quarter of the prompt's characters plus
``max_tokens``) and corrected to the receipt's actual tokens when it settles.

Every response to such a key carries OpenAI's ``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` and their ``-tokens``
twins. Memory is bounded by the keys (only authenticated keys get a window) times ``rpm``
(or ``tpm``: every entry is at least one token). These counts are per process; on
PostgreSQL, where replicas share one database, :class:`SharedRateLimiter` keeps the same
windows in it instead (:mod:`smallfirst.store.ratelimits`), so the replicas together
allow the rate once.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from smallfirst.errors import RateLimitedError
from smallfirst.store.keys import ApiKey
from smallfirst.store.ratelimits import RateBook, Refusal, Usage

__all__ = ["WINDOW_S", "Entry", "RateLimiter", "SharedRateLimiter", "estimate_tokens"]

WINDOW_S = 60.0


def estimate_tokens(prompt_chars: int, max_tokens: int | None) -> int:
    """OpenAI's pre-call estimate: about four characters a token, plus the completion."""
    return max(1, math.ceil(prompt_chars / 4) + (max_tokens or 0))


@dataclass(slots=True)
class Entry:
    """One admitted request in a key's window (``tokens`` is corrected at settlement);
    ``row``: its row in the database, when the window is shared, and ``window`` the key's
    window as it was admitted into (its rate-limit headers, without asking again)."""

    at: float
    tokens: int
    row: int | None = None
    window: Usage | None = None


@dataclass(slots=True)
class _Window:
    entries: deque[Entry] = field(default_factory=deque)

    def trim(self, now: float) -> None:
        while self.entries and self.entries[0].at <= now - WINDOW_S:
            self.entries.popleft()

    def tokens(self) -> int:
        return sum(e.tokens for e in self.entries)


def _reset(seconds: float) -> str:
    """OpenAI's duration format: ``250ms``, ``12s``, ``1m3s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s" if minutes else f"{rest:.3g}s"


class RateLimiter:
    # whether admit, correct and headers wait on the store (the server then offloads them)
    blocking = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def admit(self, key: ApiKey, tokens: int, now: float | None = None) -> Entry | None:
        """Count one request of ``tokens`` on ``key``, or raise :class:`RateLimitedError`."""
        if key.rpm is None and key.tpm is None:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            window = self._windows.setdefault(key.id, _Window())
            window.trim(now)
            entries = window.entries
            if key.rpm is not None and len(entries) >= key.rpm:
                wait = entries[len(entries) - key.rpm].at + WINDOW_S - now
                raise _limited(f"{key.rpm} requests per minute", key, wait)
            if key.tpm is not None:
                if tokens > key.tpm:
                    raise _limited(
                        f"{key.tpm} tokens per minute (this request alone may need {tokens})",
                        key,
                        WINDOW_S,
                    )
                used = window.tokens()
                if used + tokens > key.tpm:
                    wait, freed = WINDOW_S, 0
                    for e in entries:  # oldest first: when enough of them will have gone
                        freed += e.tokens
                        if used - freed + tokens <= key.tpm:
                            wait = e.at + WINDOW_S - now
                            break
                    raise _limited(f"{key.tpm} tokens per minute", key, wait)
            entry = Entry(now, tokens)
            entries.append(entry)
            return entry

    def correct(self, entry: Entry | None, tokens: int) -> None:
        """Replace an admitted request's estimate by its actual tokens."""
        if entry is not None:
            with self._lock:
                entry.tokens = max(0, tokens)

    def headers(
        self, key: ApiKey, entry: Entry | None = None, now: float | None = None
    ) -> list[tuple[bytes, bytes]]:
        """OpenAI's rate-limit headers for ``key`` (none when it has no limits); ``entry``,
        the request's own, is not needed here: the window is in memory."""
        if key.rpm is None and key.tpm is None:
            return []
        now = time.monotonic() if now is None else now
        with self._lock:
            window = self._windows.get(key.id) or _Window()
            window.trim(now)
            count, used = len(window.entries), window.tokens()
            oldest = window.entries[0].at if window.entries else now - WINDOW_S
        return _headers(key, count, used, max(0.0, oldest + WINDOW_S - now))


class SharedRateLimiter:
    """:class:`RateLimiter`'s contract on windows kept in the database
    (:class:`~smallfirst.store.ratelimits.RateBook`), so that every gateway on one
    PostgreSQL counts a key's requests and tokens together."""

    blocking = True

    def __init__(self, book: RateBook) -> None:
        self._book = book

    def admit(self, key: ApiKey, tokens: int, now: float | None = None) -> Entry | None:
        if key.rpm is None and key.tpm is None:
            return None
        now = time.time() if now is None else now
        got = self._book.admit(key.id, key.rpm, key.tpm, tokens, now)
        if isinstance(got, Refusal):
            raise _limited(got.what, key, got.wait_s)
        return Entry(now, tokens, got.id, got.usage)

    def correct(self, entry: Entry | None, tokens: int) -> None:
        if entry is not None and entry.row is not None:
            self._book.correct(entry.row, tokens)

    def headers(
        self, key: ApiKey, entry: Entry | None = None, now: float | None = None
    ) -> list[tuple[bytes, bytes]]:
        """From the window ``entry`` was admitted into; without one (a request that was not
        admitted, or not counted), read from the database."""
        if key.rpm is None and key.tpm is None:
            return []
        now = time.time() if now is None else now
        if entry is not None and entry.window is not None:
            usage = entry.window
        else:
            usage = self._book.usage(key.id, now)
        oldest = usage.oldest if usage.oldest is not None else now - WINDOW_S
        return _headers(key, usage.requests, usage.tokens, max(0.0, oldest + WINDOW_S - now))


def _headers(key: ApiKey, count: int, used: int, reset_s: float) -> list[tuple[bytes, bytes]]:
    """OpenAI's rate-limit headers: limits, what remains, when the window has room."""
    reset = _reset(reset_s).encode()
    out: list[tuple[bytes, bytes]] = []
    if key.rpm is not None:
        out += [
            (b"x-ratelimit-limit-requests", str(key.rpm).encode()),
            (b"x-ratelimit-remaining-requests", str(max(0, key.rpm - count)).encode()),
            (b"x-ratelimit-reset-requests", reset),
        ]
    if key.tpm is not None:
        out += [
            (b"x-ratelimit-limit-tokens", str(key.tpm).encode()),
            (b"x-ratelimit-remaining-tokens", str(max(0, key.tpm - used)).encode()),
            (b"x-ratelimit-reset-tokens", reset),
        ]
    return out


def _limited(what: str, key: ApiKey, wait_s: float) -> RateLimitedError:
    retry = max(1, math.ceil(wait_s))
    return RateLimitedError(
        f"Rate limit reached for key {key.name}: {what}. Please try again in {retry}s.",
        retry,
    )
