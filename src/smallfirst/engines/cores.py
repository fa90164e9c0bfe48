"""How many threads a decode step uses: the cores the rest of the machine leaves free.

llama.cpp's threads meet at a barrier after every operation of a forward pass. With a long
OpenMP spin (libgomp's default, the fastest on a machine that only serves; see
:mod:`.openmp`), a thread that arrives first spins on its core until the others catch up.
When another process wants that core, the spin takes it from the thread that still has work,
and every step waits on the slowest. Decoding with fewer threads leaves the other work its
cores, and one thread has no barrier to wait at.

:class:`FreeCores` reads, at most once per interval, how much CPU time the processes other
than this one used on the cores this process may run on (``/proc/stat``, less this process's
own time) and answers how many threads a step should use: the configured count while those
cores are free, one fewer per core that other work keeps a quarter busy or more, never
fewer than one. The engine says when it goes idle (:meth:`FreeCores.rest`), so that what
other processes did meanwhile is not counted.

What it does not do: it does not pin threads to cores, read cgroup CPU quotas, or change
the OpenMP spin (fixed when libgomp loads). Where ``/proc/stat`` cannot be read it answers
the configured count.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuTimes", "FreeCores", "others_cores", "read_cpu_times", "threads_for"]

log = logging.getLogger(__name__)

PROC_STAT = Path("/proc/stat")
# the share of a core other processes may use before a thread gives it up
SHARE_TOLERATED = 0.25
# /proc/stat counts in USER_HZ ticks
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuTimes:
    """One reading: busy time of the watched cores (every process), this process's CPU time,
    and when it was taken."""

    cores_busy_s: float
    own_s: float
    at_s: float


def read_cpu_times(cpus: Collection[int], stat: Path = PROC_STAT) -> CpuTimes | None:
    """Busy seconds of ``cpus`` since boot and this process's CPU seconds; None without
    ``/proc/stat``."""
    try:
        text = stat.read_text()
    except OSError:
        return None
    busy_ticks = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal (guest time is inside user); steal is
        # busy too: another tenant of the host had the core
        ticks = [int(v) for v in rest.split()[:8]]
        busy_ticks += sum(ticks) - ticks[3] - ticks[4]
    own = os.times()
    return CpuTimes(busy_ticks / TICKS_PER_S, own.user + own.system, time.monotonic())


def others_cores(before: CpuTimes, after: CpuTimes) -> float:
    """How many cores' worth of CPU the other processes used between two readings."""
    wall_s = after.at_s - before.at_s
    if wall_s <= 0:
        return 0.0
    others_s = (after.cores_busy_s - before.cores_busy_s) - (after.own_s - before.own_s)
    return max(0.0, others_s / wall_s)


def threads_for(free_cores: float, most: int) -> int:
    """Threads for ``free_cores`` cores left free, at most ``most``, at least one. A core
    counts as free when others use less than :data:`SHARE_TOLERATED` of it: spinning threads
    crowd a neighbour, so one that wants a whole core shows up using only half of one."""
    return max(1, min(most, math.floor(free_cores + SHARE_TOLERATED)))


Reader = Callable[[Collection[int]], "CpuTimes | None"]


class FreeCores:
    """The thread count to decode with, following what other processes leave free.

    Not thread-safe: one scheduler thread asks it before each step.
    """

    def __init__(
        self,
        most: int,
        *,
        name: str = "",
        interval_s: float = 1.0,
        cpus: Collection[int] | None = None,
        read: Reader = read_cpu_times,
    ) -> None:
        self.most = most
        self.current = most
        self.others_cores = 0.0
        self._name = name
        self._interval_s = interval_s
        self._cpus = frozenset(cpus if cpus is not None else os.sched_getaffinity(0))
        self._read = read
        self._last = read(self._cpus)
        self._resting = False

    def changed(self) -> int | None:
        """:meth:`threads` when it differs from the count before, else None: what a caller
        passes on to llama.cpp (``llama_set_n_threads``)."""
        before = self.current
        n = self.threads()
        return n if n != before else None

    def rest(self) -> None:
        """The engine has nothing to decode: the next step starts a new window, since what
        the machine did while this engine was idle says little about it now."""
        self._resting = True

    def threads(self) -> int:
        """The count for the next step: re-read once ``interval_s`` has passed since the
        last reading, else the count from then."""
        if self._last is None:
            return self.current
        if self._resting:
            self._resting = False
            self._last = self._read(self._cpus) or self._last
            return self.current
        if time.monotonic() - self._last.at_s < self._interval_s:
            return self.current
        last, now = self._last, self._read(self._cpus)
        if now is None:
            return self.current
        self._last = now
        self.others_cores = others_cores(last, now)
        want = threads_for(len(self._cpus) - self.others_cores, self.most)
        if want != self.current:
            log.info(
                "%s: decoding with %d of %d threads (other processes use %.1f of %d cores)",
                self._name,
                want,
                self.most,
                self.others_cores,
                len(self._cpus),
            )
            self.current = want
        return self.current
