"""Helpers for tests and benchmarks: free ports, waiting for a server, an in-process gateway.

The test suite (``tests/conftest.py``) and the benchmark harness (``bench/harness``) both start
real servers on loopback and wait for them; this module is the one copy of that code. It is
public so that both can import it, but it is not part of the gateway: nothing under
``smallfirst`` imports it.

It deliberately loads no model and imports no heavy library at import time: the FastAPI app
behind :class:`LiveServer` is imported only when one is built. It starts no subprocess
itself; callers own their processes and hand them in so that a dead one fails the wait early.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import httpx
import uvicorn

from smallfirst.settings import Settings

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "LiveServer",
    "ThreadedServer",
    "free_port",
    "wait_until_up",
]

# Debian's Chromium, driven by Playwright for the dashboard test and screenshots.
CHROMIUM = "/usr/bin/chromium"
# Headless, and quiet: no background traffic of Chromium's own (updates, sync, QUIC probes).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _alive_check(proc: subprocess.Popen[bytes] | Callable[[], bool] | None) -> Callable[[], bool]:
    if proc is None:
        return lambda: True
    if isinstance(proc, subprocess.Popen):
        popen = proc
        return lambda: popen.poll() is None
    return proc


def wait_until_up(
    url: str,
    proc: subprocess.Popen[bytes] | Callable[[], bool] | None = None,
    timeout_s: float = 60.0,
    *,
    interval_s: float = 0.05,
) -> None:
    """Poll ``url`` until it answers 200.

    ``proc`` is the server's process (or a callable saying whether it is still alive); the
    wait fails as soon as it has exited rather than at the deadline. Raises ``RuntimeError``
    (saying which of the two happened) when the server exits or ``timeout_s`` runs out.
    """
    alive = _alive_check(proc)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while True:
            if not alive():
                raise RuntimeError(f"the server exited before {url} came up")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up within {timeout_s:g} s")
            time.sleep(interval_s)


class ThreadedServer:
    """An ASGI app served by uvicorn on a free loopback port, in a background thread.

    Use it as a context manager: entering starts the server and waits until uvicorn says it
    has started; leaving asks it to exit and joins the thread.
    """

    def __init__(
        self,
        app: Any,
        *,
        what: str = "server",
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.port = free_port()
        self.what = what
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"{self.what} did not start")
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=self.stop_timeout_s)


class LiveServer(ThreadedServer):
    """``create_app(settings)`` as a :class:`ThreadedServer`; ``url`` is its root."""

    def __init__(self, settings: Settings, *, start_timeout_s: float = 30.0) -> None:
        # the whole server (FastAPI, metering, store) is imported only when one is built
        from smallfirst.server.app import create_app

        self.settings = settings
        self.app = create_app(settings)
        super().__init__(self.app, what="gateway", start_timeout_s=start_timeout_s)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
