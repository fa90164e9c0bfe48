"""Blocking store calls, run off the event loop on a bounded set of worker threads.

The stores (:mod:`smallfirst.store`) are synchronous: one code path for SQLite and
PostgreSQL, also used by the CLI and by worker threads. The server must not wait on them
on its event loop: a PostgreSQL round trip, a connection checkout while the database is
lost, or a SQLite write lock held by another thread would stall every other request and
every token stream for that long. So the server awaits them here, on anyio's worker
threads (psycopg's own async pool would have needed a second, async copy of every store's
queries; a thread per call in flight gives the event loop the same freedom).

At most ``threads`` calls run at once, the size of the backend's connection pool, so a
burst of requests queues here (without a timeout) rather than in the pool, where a wait
longer than its timeout is a 503. A call is not abandoned when its request is cancelled:
a receipt's commit, once begun, completes before the response that carries it ends.

It does not decide which calls are blocking; the server's modules call through it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread

__all__ = ["Offload"]

P = ParamSpec("P")
T = TypeVar("T")


class Offload:
    """``await offload(fn, *args, **kwargs)``: ``fn`` run on a worker thread, its result
    or exception returned as if called here."""

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads
        # made on first use: anyio's limiter belongs to the running event loop
        self._limiter: anyio.CapacityLimiter | None = None

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.threads)
        call = functools.partial(fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)
