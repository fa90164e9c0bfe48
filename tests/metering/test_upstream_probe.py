"""A server process's CPU time, read from /proc for profiling a remote tier on this machine.

The probe's requests and figures are tested against a real llama-server in
tests/engines/test_llama_server.py; here, the reading itself."""

from __future__ import annotations

import os
import time

import pytest

from smallfirst.errors import ConfigError
from smallfirst.metering.upstream_probe import process_cpu_s

pytestmark = pytest.mark.fast


def test_a_process_cpu_time_counts_what_it_spent() -> None:
    before, started = process_cpu_s(os.getpid()), time.process_time()
    while time.process_time() - started < 0.1:
        pass
    spent = process_cpu_s(os.getpid()) - before
    # /proc counts in clock ticks (10 ms): the spin, give or take a tick
    assert 0.09 <= spent < 0.1 + 0.05
    assert process_cpu_s(1) >= 0  # another process's, readable by its number


def test_a_process_that_is_not_here_is_named() -> None:
    with pytest.raises(ConfigError, match="no process 999999999 on this machine"):
        process_cpu_s(999_999_999)
