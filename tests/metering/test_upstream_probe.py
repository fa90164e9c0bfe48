"""Metering one request to a server on this machine, for profiling a remote tier: its
process's CPU time from /proc, the estimate's rule without counters and the counters' joules
with them (against the stub upstream, which runs in this process). The real llama-server is
profiled in tests/engines/test_llama_server.py."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from smallfirst.catalog import Catalog
from smallfirst.engines.remote import RemoteEngine
from smallfirst.errors import ConfigError
from smallfirst.metering.meter import Accountant, EstimateConstants
from smallfirst.metering.upstream_probe import UpstreamProbe, process_cpu_s
from smallfirst.settings import Settings, UserModel
from smallfirst.stub_upstream import StubUpstream
from smallfirst.types import Usage

pytestmark = pytest.mark.fast


def test_a_process_cpu_time_counts_what_it_spent() -> None:
    before, started = process_cpu_s(os.getpid()), time.process_time()
    while time.process_time() - started < 0.1:
        pass
    spent = process_cpu_s(os.getpid()) - before
    # /proc counts in clock ticks (10 ms): the spin, give or take a tick
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert 0.1 - tick - 1e-6 <= spent < 0.1 + 5 * tick  # 1e-6: 9 ticks summed as floats
    assert process_cpu_s(1) >= 0  # another process's, readable by its number


def test_a_process_that_is_not_here_is_named() -> None:
    with pytest.raises(ConfigError, match="no process 999999999 on this machine"):
        process_cpu_s(999_999_999)


class _Ticking:
    """A hardware counter that gains 2 J between any two readings."""

    name = "fake:0"
    scope = "cpu-package"

    def __init__(self) -> None:
        self.j = 0.0

    def read_j(self) -> float:
        self.j += 2.0
        return self.j


def _run(tmp_path: Path, accountant: Accountant) -> tuple[float, Usage, str, str]:
    """One probe run against a stub upstream served by this very process."""
    constants = EstimateConstants(watts_per_thread=0.0, ram_w=10.0, source="test")
    with StubUpstream() as stub:
        stubbed = UserModel(name="stubbed", base_url=stub.url, model_id="stub")
        settings = Settings(data_dir=tmp_path, models=(stubbed,))
        spec = Catalog(settings).get("stubbed")

        async def once() -> tuple[float, Usage, str, str]:
            engine = RemoteEngine(spec, settings)
            probe = UpstreamProbe(engine, os.getpid(), accountant, constants, chat=True)
            try:
                return (*await probe.run("one two three", 5), probe.scope())
            finally:
                await engine.aclose()

        return asyncio.run(once())


def test_without_counters_a_request_is_estimated_from_the_servers_process(
    tmp_path: Path,
) -> None:
    joules, usage, method, scope = _run(tmp_path, Accountant())
    # RAM watts times the request's wall time (no W/thread here): short, but not nothing
    assert method == "estimated" and 0 < joules < 10.0
    assert usage.completion_tokens == 5 and usage.prompt_tokens == 3  # the server's counts
    assert f"server pid {os.getpid()}'s CPU time" in scope


def test_with_counters_a_request_is_measured_over_the_whole_machine(tmp_path: Path) -> None:
    joules, _, method, scope = _run(tmp_path, Accountant([_Ticking()]))
    assert method == "measured" and joules == 2.0  # one reading before, one after
    assert "other processes included" in scope
