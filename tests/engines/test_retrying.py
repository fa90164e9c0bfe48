"""Reading ``Retry-After`` and the backoff between retries (the retries themselves are
tested through the gateway against a stub, in tests/server/test_resilience.py)."""

from __future__ import annotations

import asyncio
import email.utils

import httpx
import pytest

from smallfirst.engines.retrying import RETRY_AFTER_CAP_S, Retrying, retry_after_s
from smallfirst.errors import UpstreamUnavailableError
from smallfirst.settings import Settings

pytestmark = pytest.mark.fast


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_s("2") == 2.0
    assert retry_after_s(" 0.5 ") == 0.5
    assert retry_after_s("-3") == 0.0
    assert retry_after_s("999999") == RETRY_AFTER_CAP_S
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert retry_after_s(date, now=now) == pytest.approx(7.0)
    assert retry_after_s(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0
    for missing in (None, "", "soon"):
        assert retry_after_s(missing) is None


def test_backoff_doubles_with_jitter_between_half_and_all_of_it() -> None:
    settings = Settings(remote_retry_backoff_s=0.4)
    retrying = Retrying("m", httpx.AsyncClient(), settings)
    for retry, full in enumerate((0.4, 0.8, 1.6)):
        waits = [retrying.backoff(retry) for _ in range(200)]
        assert all(full / 2 <= w <= full for w in waits)
        assert max(waits) - min(waits) > full / 10  # jittered, not fixed


async def _flaky_server(drops: int) -> tuple[asyncio.Server, list[int]]:
    """A loopback HTTP server that reads each request and, for the first ``drops``
    connections, hangs up without answering; then answers 200."""
    seen = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        seen[0] += 1
        if seen[0] <= drops:
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, seen


@pytest.mark.asyncio
async def test_a_connection_dropped_before_any_response_is_sent_again() -> None:
    server, seen = await _flaky_server(drops=1)
    port = server.sockets[0].getsockname()[1]
    settings = Settings(remote_retries=2, remote_retry_backoff_s=0.01)
    async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        response = await Retrying("m", client, settings).open("/v1/chat/completions", {})
        await response.aclose()
        assert response.status_code == 200 and seen[0] == 2
        # with no retries left the drop is the upstream's failure, named as a lost connection
        server_always, _ = await _flaky_server(drops=10)
        other = server_always.sockets[0].getsockname()[1]
        async with server_always, httpx.AsyncClient(base_url=f"http://127.0.0.1:{other}") as c:
            with pytest.raises(UpstreamUnavailableError, match="connection lost"):
                await Retrying("m", c, settings).open("/v1/chat/completions", {})
