"""The attribution rule and the estimate formula, with fake clocks and counters."""

from __future__ import annotations

import pytest

from smallfirst.metering.meter import Accountant, EstimateConstants, local_energy

pytestmark = pytest.mark.fast


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeCounter:
    name = "rapl:package-0"
    scope = "cpu-package"

    def __init__(self) -> None:
        self.j = 1000.0

    def read_j(self) -> float:
        return self.j


CONSTANTS = EstimateConstants(watts_per_thread=4.0, ram_w=20.0, source="test")


def test_overlapping_generations_split_each_interval_equally() -> None:
    cpu, wall = Clock(), Clock()
    acc = Accountant(cpu_clock=cpu, wall_clock=wall)
    a, b = acc.slot(), acc.slot()
    cpu.t, wall.t = 5.0, 5.0  # idle time before anything starts: nobody's
    a.set_active(True)
    cpu.t, wall.t = 7.0, 6.0  # a alone: 2 CPU-s over 1 s
    b.set_active(True)
    cpu.t, wall.t = 11.0, 8.0  # both: 4 CPU-s over 2 s, half each
    a.set_active(False)
    cpu.t, wall.t = 12.0, 9.0  # b alone: 1 CPU-s over 1 s
    ea = local_energy(acc, a, CONSTANTS)
    eb = local_energy(acc, b, CONSTANTS)
    assert a.cpu_s == pytest.approx(4.0) and a.shared_wall_s == pytest.approx(2.0)
    assert b.cpu_s == pytest.approx(3.0) and b.shared_wall_s == pytest.approx(2.0)
    assert ea.method == "estimated" and ea.energy_j == pytest.approx(4.0 * 4 + 2.0 * 20)
    assert eb.energy_j == pytest.approx(3.0 * 4 + 2.0 * 20)
    assert ea.source is not None and "4 W/thread" in ea.source


def test_waiting_is_not_charged() -> None:
    cpu, wall = Clock(), Clock()
    acc = Accountant(cpu_clock=cpu, wall_clock=wall)
    slot = acc.slot()  # created (request arrived) but never active: waiting in line
    cpu.t, wall.t = 10.0, 10.0
    assert local_energy(acc, slot, CONSTANTS).energy_j == 0.0


def test_counters_make_it_measured() -> None:
    cpu, wall, counter = Clock(), Clock(), FakeCounter()
    acc = Accountant([counter], cpu_clock=cpu, wall_clock=wall)
    a, b = acc.slot(), acc.slot()
    a.set_active(True)
    counter.j += 30.0
    b.set_active(True)
    counter.j += 10.0
    a.set_active(False)
    energy = local_energy(acc, a, CONSTANTS)
    assert energy.method == "measured" and energy.scope == "cpu-package"
    assert energy.energy_j == pytest.approx(35.0)
    counter.j += 8.0
    assert local_energy(acc, b, CONSTANTS).energy_j == pytest.approx(13.0)


def test_deactivating_twice_is_harmless() -> None:
    acc = Accountant(cpu_clock=Clock(), wall_clock=Clock())
    slot = acc.slot()
    slot.set_active(True)
    slot.set_active(False)
    slot.set_active(False)
    local_energy(acc, slot, CONSTANTS)


def test_a_batched_step_is_split_by_tokens_contributed() -> None:
    cpu, wall, counter = Clock(), Clock(), FakeCounter()
    acc = Accountant([counter], cpu_clock=cpu, wall_clock=wall)
    a, b, gone = acc.slot(), acc.slot(), acc.slot()
    a.set_active(True)
    b.set_active(True)
    cpu.t, wall.t, counter.j = 4.0, 1.0, counter.j + 40.0
    # a read 3 prompt tokens in this step, b decoded 1; a finished slot gets nothing
    a.split_step([(a, 3), (b, 1), (gone, 5)])
    assert (a.cpu_s, b.cpu_s, gone.cpu_s) == pytest.approx((3.0, 1.0, 0.0))
    assert (a.counter_j, b.counter_j) == pytest.approx((30.0, 10.0))
    assert (a.shared_wall_s, b.shared_wall_s) == pytest.approx((0.75, 0.25))
    # a step whose sequences all left already: split equally among the active, as usual
    cpu.t = 6.0
    b.split_step([(gone, 2)])
    assert (a.cpu_s, b.cpu_s) == pytest.approx((4.0, 2.0))


def test_shares_add_up_to_the_window_total() -> None:
    cpu, wall = Clock(), Clock()
    acc = Accountant(cpu_clock=cpu, wall_clock=wall)
    slots = [acc.slot() for _ in range(3)]
    cpu.t = 1.0  # idle: nobody's, and not in the window
    for i, slot in enumerate(slots):
        slot.set_active(True)
        cpu.t += 0.5 + i
        slot.split_step([(s, j + 1) for j, s in enumerate(slots)])
    cpu.t += 2.0
    for slot in slots:
        cpu.t += 0.25
        slot.set_active(False)
    cpu.t += 9.0  # idle again
    assert sum(s.cpu_s for s in slots) == pytest.approx(acc.active_cpu_s)
    assert acc.active_cpu_s == pytest.approx(cpu.t - 1.0 - 9.0)
