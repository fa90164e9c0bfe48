"""The per-model breaker: failures in a window cool a model down, one probe reopens it."""

from __future__ import annotations

import time

import pytest

from smallfirst.engines.health import Health

pytestmark = pytest.mark.fast


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_within_the_window_cool_a_model_down_then_one_probe_goes_through() -> None:
    clock = Clock()
    health = Health(failures=3, window_s=10, cooldown_s=30, clock=clock)
    for _ in range(2):
        health.failed("m")
        assert health.admit("m")
    assert health.state("m").state == "ok" and health.state("m").recent_failures == 2
    health.failed("m")
    assert not health.admit("m")
    state = health.state("m")
    assert state.state == "cooling_down"
    assert state.until is not None and abs(state.until - (time.time() + 30)) < 1
    clock.now += 29.9
    assert not health.admit("m")
    clock.now += 0.2
    assert health.admit("m")  # this request is the probe
    assert health.state("m").state == "probing"
    assert not health.admit("m")  # others keep skipping it while the probe runs
    health.succeeded("m")
    assert health.admit("m") and health.admit("m")
    assert health.states() == []


def test_a_failed_probe_cools_down_again_and_an_abandoned_one_frees_the_slot() -> None:
    clock = Clock()
    health = Health(failures=1, window_s=10, cooldown_s=5, clock=clock)
    health.failed("m")
    clock.now += 5
    assert health.admit("m")
    health.failed("m")
    assert health.state("m").state == "cooling_down" and not health.admit("m")
    clock.now += 5
    assert health.admit("m")
    health.abandoned("m")  # the probe's client went away: the next request probes
    assert health.admit("m")


def test_failures_spread_wider_than_the_window_never_trip_it() -> None:
    clock = Clock()
    health = Health(failures=2, window_s=10, cooldown_s=30, clock=clock)
    for _ in range(5):
        health.failed("m")
        clock.now += 11
        assert health.admit("m")
    assert health.state("m").recent_failures == 0
    assert [s.model for s in health.states()] == ["m"]
    assert health.state("other").state == "ok"
