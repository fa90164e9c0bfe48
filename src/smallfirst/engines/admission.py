"""Admission control: how many generations run on one engine at once, and how many may wait.

Every engine owns one :class:`Admission`. An in-process model runs one generation at a
time (capacity 1: a llama.cpp context is never shared); a remote model lets at most
``remote_max_in_flight`` requests be open to its upstream. Past that, up to ``max_queue``
requests wait in arrival order, each for at most ``queue_timeout_s``. A request that finds
the queue full, or waits out its timeout, gets an :class:`~smallfirst.errors.OverloadedError`
at once, carrying a ``Retry-After`` estimate from how long recent generations held their
slot; nothing ran for it, so nothing is metered or stored.

For a graceful shutdown, :meth:`Admission.close` refuses new requests
(:class:`~smallfirst.errors.ShuttingDownError`) while those admitted or waiting carry on,
and :meth:`Admission.abort` ends the rest at the drain deadline: waiters are refused and
each running generation's abort hook makes its stream raise ShuttingDownError, so the
server ends it with an error event and stores its receipt.

This module knows nothing of HTTP or Prometheus: what it sees goes to an
:class:`AdmissionObserver` (the server's metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from smallfirst.errors import OverloadedError, ShuttingDownError

__all__ = ["Admission", "AdmissionObserver", "Ticket", "guarded"]

T = TypeVar("T")

# weight of the newest generation in the hold-time average behind Retry-After
HOLD_EWMA_ALPHA = 0.3
RETRY_AFTER_MAX_S = 600


class AdmissionObserver(Protocol):
    """Receives what admission sees, per model (the server's metrics implement it)."""

    def queue_depth(self, model: str, depth: int) -> None: ...

    def waited(self, model: str, seconds: float) -> None: ...

    def refused(self, model: str, reason: str) -> None: ...


@dataclass(eq=False, slots=True)
class Ticket:
    """One admitted generation: when it got its slot, and how to end it at the deadline."""

    started: float = field(default_factory=time.monotonic)
    on_abort: Callable[[], None] | None = None


class Admission:
    """A bounded, timed queue in front of ``capacity`` generation slots of one model."""

    def __init__(
        self,
        model: str,
        capacity: int,
        max_queue: int,
        queue_timeout_s: float,
        observer: AdmissionObserver | None = None,
    ) -> None:
        self.model = model
        self.capacity = capacity
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self._observer = observer
        self._free = capacity
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._running: set[Ticket] = set()
        self._hold_s: float | None = None
        self._closed = False

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def running(self) -> int:
        return len(self._running)

    def retry_after_s(self) -> int:
        """Seconds until a slot is likely free: the queue ahead times recent hold times."""
        hold = self._hold_s if self._hold_s is not None else 1.0
        ahead = (self.waiting + self.running) / self.capacity
        return max(1, min(RETRY_AFTER_MAX_S, math.ceil(hold * max(ahead, 1.0))))

    async def acquire(self) -> Ticket:
        """A slot, now or after waiting in line; OverloadedError or ShuttingDownError if not."""
        if self._closed:
            raise self._refuse("shutting_down")
        if self._free > 0 and not self._waiters:
            self._free -= 1
            self._observe_wait(0.0)
            return self._admit()
        if len(self._waiters) >= self.max_queue:
            raise self._refuse("queue_full")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._depth()
        began = time.monotonic()
        try:
            await asyncio.wait({waiter}, timeout=self.queue_timeout_s)
        except asyncio.CancelledError:
            self._leave(waiter)
            raise
        if not waiter.done():
            self._leave(waiter)
            self._observe_wait(time.monotonic() - began)
            raise self._refuse("queue_timeout")
        self._depth()
        self._observe_wait(time.monotonic() - began)
        if waiter.exception() is not None:
            raise self._refuse("shutting_down")
        return self._admit()

    def release(self, ticket: Ticket) -> None:
        """Give the slot back: to the next waiter in line, else to the pool of free slots."""
        if ticket not in self._running:
            return
        self._running.discard(ticket)
        held = time.monotonic() - ticket.started
        self._hold_s = (
            held
            if self._hold_s is None
            else HOLD_EWMA_ALPHA * held + (1 - HOLD_EWMA_ALPHA) * self._hold_s
        )
        self._pass_on()

    def close(self) -> None:
        """Refuse new requests from now on; those admitted or waiting carry on."""
        self._closed = True

    def abort(self) -> None:
        """The drain deadline: refuse every waiter and end every running generation."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ShuttingDownError(self.shutdown_message()))
        self._depth()
        for ticket in list(self._running):
            if ticket.on_abort is not None:
                ticket.on_abort()

    def _admit(self) -> Ticket:
        ticket = Ticket()
        self._running.add(ticket)
        return ticket

    def _pass_on(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._depth()
                return
        self._free += 1
        self._depth()

    def _leave(self, waiter: asyncio.Future[None]) -> None:
        """A waiter gives up (timeout or cancelled); a slot it was just handed passes on."""
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            self._pass_on()
            return
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
        self._depth()

    def _refuse(self, reason: str) -> OverloadedError | ShuttingDownError:
        if self._observer is not None:
            self._observer.refused(self.model, reason)
        if reason == "shutting_down":
            return ShuttingDownError(self.shutdown_message())
        retry = self.retry_after_s()
        why = (
            f"{self.max_queue} requests are already waiting"
            if reason == "queue_full"
            else f"the request waited {self.queue_timeout_s:g} s without being served"
        )
        return OverloadedError(f"{self.model} is overloaded: {why}. Retry after {retry} s.", retry)

    def shutdown_message(self, *, ended: bool = False) -> str:
        """What a request refused (or, ``ended``, cut short) by the shutdown is told."""
        if ended:
            return f"The server is shutting down; {self.model} was stopped at the drain deadline."
        return f"The server is shutting down; {self.model} takes no more requests."

    def _depth(self) -> None:
        if self._observer is not None:
            self._observer.queue_depth(self.model, len(self._waiters))

    def _observe_wait(self, seconds: float) -> None:
        if self._observer is not None:
            self._observer.waited(self.model, seconds)


async def guarded(admission: Admission, inner: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
    """``inner`` run in one of ``admission``'s slots, raising ShuttingDownError when aborted.

    For engines whose stream cannot be told to stop from outside (a remote upstream's):
    the abort cancels the consuming task while it waits on ``inner``, and the cancellation
    becomes ShuttingDownError. ``inner`` runs and closes in the consumer's own task: an
    HTTP response read in one task and closed from another (as a helper task per step
    did) left its pooled connection checked out, one per client hang-up, until the
    upstream's pool ran dry. The in-process engine has a cheaper hook of its own.
    """
    try:
        ticket = await admission.acquire()
    except BaseException:
        await inner.aclose()
        raise
    task = asyncio.current_task()
    waiting = aborted = False

    def abort() -> None:
        nonlocal aborted
        if aborted:
            return
        aborted = True
        if waiting and task is not None:
            task.cancel()  # only while it waits on ``inner``: never mid-send to the client

    ticket.on_abort = abort
    try:
        while True:
            if aborted:
                raise ShuttingDownError(admission.shutdown_message(ended=True))
            waiting = True
            try:
                item = await anext(inner)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if not aborted or task is None:
                    raise
                task.uncancel()
                raise ShuttingDownError(admission.shutdown_message(ended=True)) from None
            finally:
                waiting = False
            yield item
    finally:
        try:
            await inner.aclose()
        finally:
            admission.release(ticket)
