"""Energy per request: hardware counters when readable, otherwise a CPU-time estimate.

Attribution rule (the same for measured and estimated figures). An in-process generation is
*active* from the moment it holds its model until it releases it; waiting in line does not
count. At every start and end of an active generation the meter reads the process's CPU time
(all threads: llama.cpp's worker threads, the event loop, HTTP) and every hardware counter,
and splits what was used since the last reading equally among the generations active in
that interval. With one request at a time (the common case: requests on one model take
turns) the request gets everything the process used while it ran; with several models
generating at once each gets an equal share of each interval. Time when nothing is active
(idle) is attributed to no request. A batched engine, whose every decode step serves several
requests, also reads the meter after each step (``split_step``) and splits that interval by
the tokens each request contributed to the step instead. Either way the shares of a window
add up to what the process spent while anything was active (``active_cpu_s``, ``active_j``).

* ``measured``: the counters' joules (RAPL package and DRAM; NVML board), split as above.
  Scope names the counters: it is whole-package (or board) energy, not the process's.
* ``estimated``: CPU-seconds × watts per busy hardware thread, plus RAM watts × the
  request's share of wall time. Constants come from :mod:`smallfirst.metering.power`
  (CodeCarbon's table or a documented default) and are written into the record.
* Remote engines run elsewhere: ``profile`` (joules per token measured or configured for
  that model) when there is one, else unknown with a reason. Never a silent zero.

This module measures; turning joules into money and CO2 is :mod:`.receipts`' job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from smallfirst.engines.base import ComputeMeter
from smallfirst.metering.counters import Counter

EnergyMethod = Literal["measured", "estimated", "profile", "unknown"]


@dataclass(frozen=True, slots=True)
class Energy:
    """One request's energy and how it was obtained."""

    energy_j: float | None
    method: EnergyMethod
    scope: str | None = None
    source: str | None = None  # how the figure was made, constants included
    note: str | None = None  # why it is unknown, when it is
    cpu_s: float | None = None


class Slot:
    """What one in-process generation accumulated while it was active."""

    __slots__ = ("_meter", "active", "counter_j", "cpu_s", "shared_wall_s")

    def __init__(self, meter: Accountant) -> None:
        self._meter = meter
        self.active = False
        self.cpu_s = 0.0
        self.counter_j = 0.0
        self.shared_wall_s = 0.0

    def set_active(self, active: bool) -> None:
        """Called by the engine's worker when it takes and releases its model."""
        self._meter.set_active(self, active)

    def split_step(self, shares: Sequence[tuple[ComputeMeter, int]]) -> None:
        """A batched engine's step ended: split it among its slots by tokens contributed."""
        self._meter.split_step([(s, n) for s, n in shares if isinstance(s, Slot)])


class Accountant:
    """Splits process CPU time and counter energy among active generations (thread-safe)."""

    def __init__(
        self,
        counters: Sequence[Counter] = (),
        cpu_clock: Callable[[], float] = time.process_time,
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counters = tuple(counters)
        self._cpu_clock = cpu_clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._active: list[Slot] = []
        self._last = self._readings()
        # what the process spent while some generation was active: the window total that
        # the slots' shares add up to
        self.active_cpu_s = 0.0
        self.active_wall_s = 0.0
        self.active_j = 0.0

    def _readings(self) -> tuple[float, float, float]:
        joules = sum(c.read_j() for c in self.counters)
        return self._cpu_clock(), self._wall_clock(), joules

    def _settle(self, weights: Sequence[tuple[Slot, int]] = ()) -> None:
        now = self._readings()
        cpu, wall, joules = (n - last for n, last in zip(now, self._last, strict=True))
        self._last = now
        total = sum(n for _, n in weights)
        if total <= 0:
            weights = [(slot, 1) for slot in self._active]
            total = len(weights)
        if weights:
            self.active_cpu_s += cpu
            self.active_wall_s += wall
            self.active_j += joules
        for slot, n in weights:
            share = n / total
            slot.cpu_s += cpu * share
            slot.shared_wall_s += wall * share
            slot.counter_j += joules * share

    def slot(self) -> Slot:
        return Slot(self)

    def set_active(self, slot: Slot, active: bool) -> None:
        with self._lock:
            if slot.active == active:
                return
            self._settle()
            slot.active = active
            if active:
                self._active.append(slot)
            else:
                self._active.remove(slot)

    def split_step(self, shares: Sequence[tuple[Slot, int]]) -> None:
        """What the process spent since the last reading goes to ``shares`` by weight.

        A batched engine calls this after each decode step with the tokens each sequence
        contributed (prompt tokens evaluated and tokens decoded), so that a request that
        joined with a long prompt pays for it and one whose prefix was reused does not.
        Slots no longer active get nothing (their window closed); if none is left the
        interval is split equally among the active ones, as at any other reading.
        """
        with self._lock:
            self._settle([(s, n) for s, n in shares if s.active and n > 0])

    @property
    def measured(self) -> bool:
        return bool(self.counters)

    @property
    def scope(self) -> str:
        return "+".join(sorted({c.scope for c in self.counters}))


@dataclass(frozen=True, slots=True)
class EstimateConstants:
    watts_per_thread: float
    ram_w: float
    source: str  # where the watts come from


def window_energy_j(accountant: Accountant, constants: EstimateConstants) -> float:
    """What the process spent while any generation was active, by the rule the receipts
    use: the receipts of that window add up to it."""
    if accountant.measured:
        return accountant.active_j
    return accountant.active_cpu_s * constants.watts_per_thread + (
        accountant.active_wall_s * constants.ram_w
    )


def local_energy(accountant: Accountant, slot: Slot, constants: EstimateConstants) -> Energy:
    """Energy of a finished in-process generation (its slot must be inactive)."""
    slot.set_active(False)
    if accountant.measured:
        names = ", ".join(c.name for c in accountant.counters)
        return Energy(
            energy_j=slot.counter_j,
            method="measured",
            scope=accountant.scope,
            source=f"hardware counters ({names}), split equally among concurrent requests",
            cpu_s=slot.cpu_s,
        )
    energy_j = slot.cpu_s * constants.watts_per_thread + slot.shared_wall_s * constants.ram_w
    return Energy(
        energy_j=energy_j,
        method="estimated",
        scope="process-cpu-time+ram",
        source=(
            f"{slot.cpu_s:.4f} CPU-s × {constants.watts_per_thread:g} W/thread "
            f"+ {slot.shared_wall_s:.4f} s × {constants.ram_w:g} W RAM ({constants.source})"
        ),
        cpu_s=slot.cpu_s,
    )
