"""Reading ``Retry-After`` and the backoff between retries (the retries themselves are
tested through the gateway against a stub, in tests/server/test_resilience.py)."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from smallfirst.engines.retrying import RETRY_AFTER_CAP_S, Retrying, retry_after_s
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
