"""How many threads a step uses: the arithmetic on readings, and the real /proc/stat beside a
process that keeps a core busy."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Collection

import pytest

from smallfirst.engines.cores import CpuTimes, FreeCores, others_cores, read_cpu_times, threads_for


@pytest.mark.fast
def test_others_use_what_the_cores_did_less_our_own() -> None:
    before = CpuTimes(cores_busy_s=100.0, own_s=10.0, at_s=50.0)
    after = CpuTimes(cores_busy_s=103.0, own_s=11.5, at_s=51.0)  # 3 s busy, 1.5 of them ours
    assert others_cores(before, after) == pytest.approx(1.5)
    # ticks are coarser than our own clock: never below zero
    assert others_cores(before, CpuTimes(100.0, 10.5, 51.0)) == 0.0
    assert others_cores(before, CpuTimes(101.0, 10.0, 50.0)) == 0.0  # no time passed


@pytest.mark.fast
@pytest.mark.parametrize(
    ("free", "most", "want"),
    [(2.0, 2, 2), (1.8, 2, 2), (1.7, 2, 1), (0.2, 2, 1), (6.0, 4, 4), (2.8, 4, 3), (3.0, 8, 3)],
)
def test_threads_follow_the_free_cores(free: float, most: int, want: int) -> None:
    assert threads_for(free, most) == want


class Readings:
    """A machine whose other processes use ``rate`` cores, changed by the test."""

    def __init__(self) -> None:
        self.rate = 0.0
        self.busy_s = 0.0
        self.at_s = time.monotonic()

    def __call__(self, cpus: Collection[int]) -> CpuTimes:
        now = time.monotonic()
        self.busy_s += self.rate * (now - self.at_s)
        self.at_s = now
        return CpuTimes(self.busy_s, 0.0, now)


@pytest.mark.fast
def test_the_count_changes_only_once_an_interval_has_passed() -> None:
    readings = Readings()
    cores = FreeCores(2, interval_s=0.05, cpus=[0, 1], read=readings)
    readings.rate = 1.5
    assert cores.threads() == 2  # the interval has not passed: no new reading
    time.sleep(0.06)
    assert cores.threads() == 1
    assert cores.others_cores == pytest.approx(1.5, rel=0.2)
    readings.rate = 0.0
    time.sleep(0.06)
    assert cores.threads() == 2


@pytest.mark.fast
def test_what_others_did_while_the_engine_rested_does_not_count() -> None:
    readings = Readings()
    cores = FreeCores(2, interval_s=0.01, cpus=[0, 1], read=readings)
    cores.rest()
    readings.rate = 2.0  # a neighbour busy while no step ran
    time.sleep(0.05)
    readings.rate = 0.0  # and gone when steps resume
    assert cores.threads() == 2  # after a rest: a new window starts here
    time.sleep(0.02)
    assert cores.threads() == 2
    assert cores.others_cores == pytest.approx(0.0)


@pytest.mark.fast
def test_without_proc_stat_the_configured_count_stays() -> None:
    cores = FreeCores(2, interval_s=0.0, cpus=[0, 1], read=lambda cpus: None)
    assert cores.threads() == 2


def spin_forever() -> None:
    while True:
        pass


def wait_for(cores: FreeCores, done: Callable[[int], bool], timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while not done(got := cores.threads()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


def test_a_busy_neighbour_takes_a_thread_and_gives_it_back() -> None:
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("one core: there is no thread to give up")
    assert read_cpu_times(cpus) is not None
    most = len(cpus)
    cores = FreeCores(most, interval_s=0.5, cpus=cpus)
    neighbour = multiprocessing.Process(target=spin_forever, daemon=True)
    neighbour.start()
    try:
        assert wait_for(cores, lambda n: n < most) < most
        assert cores.others_cores >= 0.5
    finally:
        neighbour.kill()
        neighbour.join()
    assert wait_for(cores, lambda n: n == most) == most
