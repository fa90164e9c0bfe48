"""Cumulative hardware energy counters: Linux RAPL (CPU package, DRAM) and NVIDIA NVML (GPU).

A :class:`Counter` turns one hardware register into a float of joules that only goes up, so
that the energy of a window is the difference of two readings. Discovery
(:func:`rapl_counters`, :func:`nvml_counters`) returns only counters that could actually be
read, and returns an empty list rather than raising: on virtual machines the powercap tree is
usually absent or readable by root only, and most machines have no NVIDIA GPU.

RAPL (``/sys/class/powercap/intel-rapl:N`` and ``intel-rapl:N:M``; AMD's kernel driver uses
the same names) gives one zone per CPU package, with subzones. The package zone and a
``dram`` subzone are returned; ``core`` and ``uncore`` subzones are skipped because they are
parts of the package figure, and a top-level ``psys`` zone (the whole platform, package
included) is skipped because adding it would count the package twice. ``energy_uj`` wraps to
zero at ``max_energy_range_uj``; each counter keeps its last raw value and adds one range when
the value went down (as CodeCarbon does in ``codecarbon/core/rapl.py``). A wrap that happens
twice between two readings cannot be seen, so the difference of two readings is right only
when they are less than one wrap period apart: with a 65 kJ range (common on AMD) and a 200 W
package that is about 5 minutes; with Intel's usual 262 kJ about 20 minutes.

NVML's ``nvmlDeviceGetTotalEnergyConsumption`` (Volta and newer) is millijoules since the
driver was loaded, for the whole board (GPU, its memory, fans, regulators). The driver updates
it about every 100 ms, so a window much shorter than that reads zero or a whole step.

This module does not decide what a window is, attribute energy to requests, or estimate
anything when no counter exists (see :mod:`smallfirst.metering.power` for the estimate).
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

_RAPL_ZONE = re.compile(r"intel-rapl:(\d+)(?::(\d+))?")


class Counter(Protocol):
    """A cumulative energy counter; only differences between two readings mean anything."""

    name: str  # "rapl:package-0", "rapl:dram-0", "nvml:0"
    scope: str  # "cpu-package", "dram", "gpu-board"

    def read_j(self) -> float:
        """Cumulative joules, never decreasing (wrap-around and counter resets handled)."""
        ...


class RaplCounter:
    """One RAPL zone's ``energy_uj``, unwrapped.

    Reading mutates the wrap bookkeeping, so it is done under a lock: requests running side by
    side read the same counter from different threads.
    """

    def __init__(self, name: str, scope: str, energy_path: Path, max_range_uj: int) -> None:
        self.name = name
        self.scope = scope
        self._energy_path = energy_path
        self._max_range_uj = max_range_uj
        self._lock = threading.Lock()
        self._wrapped_uj = 0
        # Read once now: construction doubles as the readability check.
        self._last_raw_uj = self._read_raw_uj()

    def _read_raw_uj(self) -> int:
        return int(self._energy_path.read_text().strip())

    def read_j(self) -> float:
        with self._lock:
            raw_uj = self._read_raw_uj()
            if raw_uj < self._last_raw_uj:
                self._wrapped_uj += self._max_range_uj
            self._last_raw_uj = raw_uj
            return (raw_uj + self._wrapped_uj) / 1e6

    def __repr__(self) -> str:
        return f"RaplCounter({self.name!r}, {str(self._energy_path)!r})"


class NvmlCounter:
    """One GPU's total-energy counter from NVML (millijoules since the driver was loaded)."""

    def __init__(self, nvml: Any, index: int, handle: Any) -> None:
        self.name = f"nvml:{index}"
        self.scope = "gpu-board"
        self._nvml = nvml
        self._handle = handle
        self._lock = threading.Lock()
        self._offset_mj = 0
        # Read once now: an unsupported GPU raises NVMLError here and is left out.
        self._last_raw_mj = self._read_raw_mj()

    def _read_raw_mj(self) -> int:
        return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def read_j(self) -> float:
        with self._lock:
            raw_mj = self._read_raw_mj()
            # The counter is 64-bit and never wraps; it only goes down when the driver was
            # reloaded and started again from zero, so carry what had been counted before.
            if raw_mj < self._last_raw_mj:
                self._offset_mj += self._last_raw_mj
            self._last_raw_mj = raw_mj
            return (raw_mj + self._offset_mj) / 1e3

    def __repr__(self) -> str:
        return f"NvmlCounter({self.name!r})"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _rapl_role(domain: str, subzone: bool, package_index: str) -> tuple[str, str] | None:
    """(counter name, scope) for a zone worth counting, None for one to skip."""
    if domain == "dram":
        # Usually a subzone of the package; some servers list it as a zone of its own.
        return f"rapl:dram-{package_index}", "dram"
    if not subzone and domain.startswith("package"):
        return f"rapl:{domain}", "cpu-package"
    return None  # core, uncore (inside the package figure), psys (would count it twice)


def _zone_key(path: Path) -> tuple[int, int]:
    match = _RAPL_ZONE.fullmatch(path.name)
    assert match is not None
    return int(match.group(1)), int(match.group(2) or -1)


def rapl_counters(root: Path = Path("/sys/class/powercap")) -> list[Counter]:
    """The readable RAPL package and DRAM counters under ``root``; [] when there are none."""
    try:
        zones = [p for p in root.iterdir() if _RAPL_ZONE.fullmatch(p.name)]
    except OSError:
        log.debug("no RAPL: %s is not readable or absent", root)
        return []
    counters: list[Counter] = []
    seen: set[str] = set()
    for zone in sorted(zones, key=_zone_key):
        match = _RAPL_ZONE.fullmatch(zone.name)
        assert match is not None
        domain = _read_text(zone / "name")
        if domain is None:
            continue
        role = _rapl_role(domain, match.group(2) is not None, match.group(1))
        if role is None:
            continue
        name, scope = role
        if name in seen:
            log.debug("RAPL zone %s repeats %s; skipped", zone, name)
            continue
        max_range = _read_text(zone / "max_energy_range_uj")
        try:
            max_range_uj = int(max_range) if max_range is not None else 0
            if max_range_uj <= 0:
                # Without the range a wrap would be mistaken for a huge jump, so no counter.
                raise ValueError(f"max_energy_range_uj is {max_range!r}")
            counter = RaplCounter(name, scope, zone / "energy_uj", max_range_uj)
        except (OSError, ValueError) as exc:
            # Since CVE-2020-8694 energy_uj is root-only on most distributions.
            log.debug("RAPL zone %s (%s) not readable: %s", zone, domain, exc)
            continue
        seen.add(name)
        counters.append(counter)
    return counters


def nvml_counters(nvml: Any | None = None) -> list[Counter]:
    """One counter per NVIDIA GPU whose energy counter is readable; [] when there are none.

    ``nvml`` is the ``pynvml`` module (from the ``nvidia-ml-py`` package), or a stand-in with
    the same functions for tests. NVML stays initialised afterwards: the counters need it.
    """
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            log.debug("no NVML: the pynvml module (nvidia-ml-py) is not installed")
            return []
    try:
        nvml.nvmlInit()
        count = int(nvml.nvmlDeviceGetCount())
    except Exception as exc:
        # No driver, no library, no GPU, or a broken install: all mean "no GPU counter",
        # and metering must never take the gateway down.
        log.debug("no NVML: %s", exc)
        return []
    counters: list[Counter] = []
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            counters.append(NvmlCounter(nvml, index, handle))
        except nvml.NVMLError as exc:
            # NOT_SUPPORTED before Volta; other errors for a GPU that fell off the bus.
            log.info("GPU %d has no readable energy counter: %s", index, exc)
    return counters
