"""Admission on its own: the bound, the timeout, the order, the shutdown, what it reports.

These drive :class:`~smallfirst.engines.admission.Admission` directly on an event loop; the
HTTP side (429 with Retry-After, 503, the metrics) is in tests/server/test_overload.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest

from smallfirst.engines.admission import Admission, guarded
from smallfirst.errors import OverloadedError, ShuttingDownError

pytestmark = pytest.mark.fast


class Seen:
    def __init__(self) -> None:
        self.depths: list[int] = []
        self.waits: list[float] = []
        self.refusals: list[str] = []

    def queue_depth(self, model: str, depth: int) -> None:
        self.depths.append(depth)

    def waited(self, model: str, seconds: float) -> None:
        self.waits.append(seconds)

    def refused(self, model: str, reason: str) -> None:
        self.refusals.append(reason)


def test_past_the_bound_is_refused_at_once_and_waiters_are_served_in_order() -> None:
    async def main() -> None:
        seen = Seen()
        adm = Admission("m", 1, 2, 10.0, seen)
        first = await adm.acquire()
        order: list[str] = []

        async def wait(name: str) -> None:
            ticket = await adm.acquire()
            order.append(name)
            adm.release(ticket)

        waiters = [asyncio.create_task(wait("a")), asyncio.create_task(wait("b"))]
        await asyncio.sleep(0.01)
        assert adm.waiting == 2
        began = time.monotonic()
        with pytest.raises(OverloadedError) as refused:
            await adm.acquire()
        assert time.monotonic() - began < 0.05
        assert refused.value.retry_after_s >= 1
        adm.release(first)
        await asyncio.gather(*waiters)
        assert order == ["a", "b"]
        assert adm.waiting == 0 and adm.running == 0
        assert seen.refusals == ["queue_full"]
        assert max(seen.depths) == 2 and seen.depths[-1] == 0
        assert len(seen.waits) == 3  # the first (no wait) and both waiters

    asyncio.run(main())


def test_a_request_waits_at_most_the_queue_timeout() -> None:
    async def main() -> None:
        seen = Seen()
        adm = Admission("m", 1, 4, 0.2, seen)
        held = await adm.acquire()
        began = time.monotonic()
        with pytest.raises(OverloadedError):
            await adm.acquire()
        waited = time.monotonic() - began
        assert 0.15 < waited < 1.0
        assert adm.waiting == 0
        assert seen.refusals == ["queue_timeout"]
        # the slot is still the holder's, and free again once it is released
        adm.release(held)
        adm.release(await adm.acquire())

    asyncio.run(main())


def test_retry_after_follows_recent_hold_times() -> None:
    async def main() -> None:
        adm = Admission("m", 1, 0, 10.0)
        ticket = await adm.acquire()
        await asyncio.sleep(1.2)
        adm.release(ticket)
        held = await adm.acquire()
        with pytest.raises(OverloadedError) as refused:
            await adm.acquire()
        assert refused.value.retry_after_s == 2  # ceil(1.2 s x one generation ahead)
        adm.release(held)

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_the_line_and_passes_on_its_slot() -> None:
    async def main() -> None:
        adm = Admission("m", 1, 4, 10.0)
        held = await adm.acquire()
        gone = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0.01)
        adm.release(held)  # handed to the waiter ...
        gone.cancel()  # ... which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await gone
        adm.release(await asyncio.wait_for(adm.acquire(), 1.0))
        assert adm.running == 0 and adm.waiting == 0

    asyncio.run(main())


def test_close_refuses_new_requests_and_abort_ends_the_rest() -> None:
    async def main() -> None:
        seen = Seen()
        adm = Admission("m", 1, 4, 10.0, seen)
        running = await adm.acquire()
        aborted: list[bool] = []
        running.on_abort = lambda: aborted.append(True)
        waiter = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0.01)
        adm.close()
        with pytest.raises(ShuttingDownError):
            await adm.acquire()
        assert not waiter.done()  # a request already in line may still be served
        adm.abort()
        with pytest.raises(ShuttingDownError):
            await waiter
        assert aborted == [True]
        assert seen.refusals == ["shutting_down", "shutting_down"]

    asyncio.run(main())


def test_guarded_stream_raises_shutting_down_when_aborted() -> None:
    async def slow() -> AsyncGenerator[int, None]:
        for i in range(100):
            await asyncio.sleep(0.05)
            yield i

    async def main() -> None:
        adm = Admission("m", 2, 0, 10.0)
        got: list[int] = []

        async def consume() -> None:
            async for i in guarded(adm, slow()):
                got.append(i)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        adm.abort()
        with pytest.raises(ShuttingDownError):
            await asyncio.wait_for(task, 1.0)
        assert 0 < len(got) < 10
        assert adm.running == 0

    asyncio.run(main())
