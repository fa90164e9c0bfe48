"""Graceful shutdown: on SIGTERM, stop taking requests, let those in flight finish, then exit 0.

The first SIGTERM (or Ctrl+C) starts the drain. uvicorn closes its listening sockets
(new connections are refused) and idle keep-alive connections, and waits for open
responses; a request that had not yet reached a model's queue gets 503
``server_shutting_down``. Requests running or waiting in a queue carry on for up to
``drain_timeout_s``; at that deadline the engines' admissions end them: a stream ends with
an error event (code ``server_shutting_down``) and ``[DONE]``, a request not yet answered
gets 503, and each one's receipt is stored as usual (``error``). uvicorn then runs the app's
shutdown (models unloaded, the store closed) and the process exits 0. A second signal
exits at once with status 128 + the signal's number, waiting for nothing (every receipt
stored so far is already committed).

uvicorn's own signal handling would re-raise the signal after its shutdown (so the process
dies by SIGTERM, not with status 0) and only forces an exit on a second Ctrl+C;
:class:`GracefulServer` replaces those two parts and keeps the rest of uvicorn's shutdown.

This module does not stop generations itself (:mod:`smallfirst.engines.admission` does)
and does not change how a stream or a receipt is framed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType

import uvicorn
from fastapi import FastAPI

from smallfirst.engines.pool import EnginePool

__all__ = ["DRAIN_GRACE_S", "Drain", "GracefulServer"]

log = logging.getLogger(__name__)

# after the drain deadline: time for ended streams to send their error event and store
# their receipts before uvicorn cancels what is left
DRAIN_GRACE_S = 5.0
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Drain:
    """The app's half of a graceful shutdown: close the queues, and end them at the deadline."""

    def __init__(self, pool: EnginePool, drain_timeout_s: float) -> None:
        self.pool = pool
        self.drain_timeout_s = drain_timeout_s
        self.draining = False
        self._deadline: asyncio.TimerHandle | None = None

    def begin(self) -> None:
        """Refuse new requests; end the rest after ``drain_timeout_s`` (call on the loop)."""
        if self.draining:
            return
        self.draining = True
        log.info("draining: in-flight requests have %g s to finish", self.drain_timeout_s)
        self.pool.close_admissions()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self.drain_timeout_s, self.deadline)

    def deadline(self) -> None:
        """End every request still waiting or running."""
        log.warning("drain deadline: ending the requests still in flight")
        self.pool.abort_admissions()

    def cancel(self) -> None:
        """The app is shutting down anyway: no deadline is needed any more."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


class GracefulServer(uvicorn.Server):
    """uvicorn's server, draining the app on the first signal and exiting on the second."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_app(
        cls, app: FastAPI, host: str, port: int, log_level: str, drain: Drain
    ) -> GracefulServer:
        """A server for ``app`` whose own graceful timeout outlasts the drain deadline."""
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=int(drain.drain_timeout_s + DRAIN_GRACE_S) + 1,
        )
        return cls(config, drain)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # signals reach only the main thread; a server in another thread (tests) has none
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            log.warning("second signal: exiting now")
            logging.shutdown()
            os._exit(128 + sig)
        self.should_exit = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.drain.begin)
