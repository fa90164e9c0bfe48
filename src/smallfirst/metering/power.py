"""How many watts one busy CPU thread and the machine's RAM draw, for the CPU-time estimate.

When no energy counter is readable (the usual case on virtual machines, see
:mod:`smallfirst.metering.counters`), energy is estimated as CPU seconds × watts per thread,
plus RAM watts × seconds. This module finds those two figures the way CodeCarbon 3 does,
from CodeCarbon's shipped table of CPU TDPs (``codecarbon/data/hardware/cpu_power.csv``),
read directly so that neither CodeCarbon nor pandas is imported.

CPU. The model name (``/proc/cpuinfo`` ``model name``, which is the CPUID brand string that
CodeCarbon gets from py-cpuinfo) is matched against the table with CodeCarbon's rule
(``TDP._get_matching_cpu`` in ``codecarbon/core/cpu.py``): a case-insensitive exact match; then
the same after dropping "(R)", " CPU" and the "@ 2.90GHz" suffix; then a row whose word set
contains, or is contained in, the model's words (rapidfuzz ``token_set_ratio`` = 100), taken
only when exactly one row qualifies. The TDP is a whole-package figure, so
``watts_per_thread = TDP / hardware threads of that package``. CodeCarbon, tracking a process,
charges ``TDP × sockets × cpu_load / logical CPUs`` (``codecarbon/external/hardware.py``), i.e.
TDP divided by the threads per package the OS shows, which is what ``siblings`` in
``/proc/cpuinfo`` says. On bare metal that is the package's real thread count and is used. In
a virtual machine (the ``hypervisor`` CPU flag) the guest sees a few vCPUs of a chip with
many more threads, and dividing the package TDP by those few would bill each vCPU for a large
part of the whole chip (225 W / 2 vCPUs = 112 W, where the chip's 128 threads draw under 2 W
each); the thread count is then unknown, the TDP cannot be split, and the default applies
unless the caller gives ``threads_per_package`` (or ``watts_per_thread``) for the host chip.
The default for an unknown CPU is 4 W per thread: CodeCarbon's ``DEFAULT_POWER_PER_CORE``,
which it applies per thread (``threads × 4 W``) when the model is not in its table.

RAM. CodeCarbon 3's rule (``RAM._calculate_ram_power`` in ``codecarbon/external/ram.py``):
guess the DIMM count from the total size, 5 W per DIMM on x86 (1.5 W on ARM), with the
marginal DIMM counted at 90 % beyond 4 DIMMs, 80 % beyond 8 and 70 % beyond 16, and at least
10 W on x86 (3 W on ARM). The size is the machine's total memory in GiB, as in CodeCarbon's
default machine tracking mode.

This module does not measure anything, does not count CPU time, and does not decide how the
RAM's watts are shared between requests.
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from smallfirst.errors import ConfigError
from smallfirst.metering.codecarbon_data import codecarbon_data_file, codecarbon_version

log = logging.getLogger(__name__)

# codecarbon/core/cpu.py DEFAULT_POWER_PER_CORE, applied per thread for unknown CPUs.
DEFAULT_WATTS_PER_THREAD = 4.0
# codecarbon/external/ram.py RAM_SLOT_POWER_X86, and the ARM figures of _calculate_ram_power.
RAM_W_PER_DIMM_X86 = 5.0
RAM_W_PER_DIMM_ARM = 1.5
RAM_MIN_W_ARM = 3.0

_PROC_CPUINFO = Path("/proc/cpuinfo")
_CPU_TABLE = "hardware/cpu_power.csv"


@dataclass(frozen=True)
class CpuInfo:
    """What ``/proc/cpuinfo`` says about the first CPU."""

    cpu_model: str  # "" when unknown
    threads_per_package: int | None  # "siblings": logical CPUs per package as the OS sees it
    virtualized: bool  # the "hypervisor" flag: the OS runs in a virtual machine


@dataclass(frozen=True)
class CpuPower:
    """Watts per busy CPU thread and RAM watts, with where each figure came from."""

    cpu_model: str
    tdp_w: float | None
    watts_per_thread: float
    source: str
    ram_w: float
    ram_source: str


def read_cpuinfo(path: Path = _PROC_CPUINFO) -> CpuInfo:
    """Model, threads per package and virtualisation from ``/proc/cpuinfo`` (empty elsewhere)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        # platform.processor() would give "x86_64" or "arm": no model, so say nothing.
        return CpuInfo(cpu_model="", threads_per_package=None, virtualized=False)
    fields: dict[str, str] = {}
    # Only the first processor's block: every block repeats the same model on one machine.
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    siblings = fields.get("siblings", "")
    return CpuInfo(
        cpu_model=fields.get("model name", ""),
        threads_per_package=int(siblings) if siblings.isdigit() and int(siblings) > 0 else None,
        virtualized="hypervisor" in fields.get("flags", "").split(),
    )


def read_cpu_model() -> str:
    """This machine's CPU model name ("" when the OS does not say)."""
    return read_cpuinfo().cpu_model


@functools.lru_cache(maxsize=1)
def _cpu_table() -> tuple[tuple[str, str], ...]:
    """CodeCarbon's (Name, TDP) rows, TDP kept as text: a few rows hold junk like '27.29.5'."""
    path = codecarbon_data_file(_CPU_TABLE)
    with path.open(newline="", encoding="utf-8") as f:
        return tuple((row["Name"], row["TDP"]) for row in csv.DictReader(f))


def _words(text: str) -> frozenset[str]:
    # rapidfuzz.utils.default_process: lower case, every non-alphanumeric character a space.
    return frozenset("".join(c if c.isalnum() else " " for c in text.lower()).split())


@functools.lru_cache(maxsize=2)
def _row_words(table: tuple[tuple[str, str], ...]) -> tuple[tuple[str, frozenset[str]], ...]:
    return tuple((name, _words(name)) for name, _ in table)


def _word_sets_nest(a: frozenset[str], b: frozenset[str]) -> bool:
    # rapidfuzz token_set_ratio is 100 exactly when a word is shared and one set holds the other.
    return bool(a & b) and (a <= b or b <= a)


def _exact(model: str, table: tuple[tuple[str, str], ...]) -> str | None:
    lowered = model.lower()
    return next((name for name, _ in table if name.lower() == lowered), None)


def match_cpu_model(cpu_model: str, table: tuple[tuple[str, str], ...] | None = None) -> str | None:
    """The table row name CodeCarbon would match for ``cpu_model``, or None.

    Mirrors ``TDP._get_matching_cpu`` (non-greedy) with its thresholds of 100, so rapidfuzz's
    scores reduce to equality tests: ``ratio`` = 100 is equal strings, ``token_set_ratio`` = 100
    is a shared word with one word set inside the other.
    """
    rows = _cpu_table() if table is None else table
    if not cpu_model.strip():
        return None
    found = _exact(cpu_model, rows)
    if found:
        return found
    model = cpu_model.replace("(R)", "")
    cut = model.find(" CPU @ ")
    if cut > 0:
        model = model[:cut]
    model = re.sub(r" @\s*\d+\.\d+GHz", "", model.replace(" CPU", ""))
    found = _exact(model, rows)
    if found:
        return found
    words = _words(model)
    if not words:
        return None
    subsets = [name for name, row_words in _row_words(rows) if _word_sets_nest(words, row_words)]
    # CodeCarbon takes the best of several only when its score is strictly higher; all of
    # these score 100, so two or more rows (even two rows of one name) mean no match.
    return subsets[0] if len(subsets) == 1 else None


def _parse_tdp_w(text: str) -> float | None:
    try:
        tdp_w = float(text)
    except ValueError:
        return None
    return tdp_w if math.isfinite(tdp_w) and tdp_w > 0 else None


def estimate_dimm_count(ram_gb: float) -> int:
    """CodeCarbon's guess of how many DIMMs hold ``ram_gb`` (``RAM._estimate_dimm_count``)."""
    if ram_gb <= 2:
        return 1
    if ram_gb <= 16:
        return 2
    if ram_gb <= 32:
        return 4
    if ram_gb <= 64:
        return 4
    if ram_gb <= 128:
        return 8
    for dimm_gb in (128, 64, 32, 16, 8, 4):
        if dimm_gb <= ram_gb / 8:
            return min(math.ceil(ram_gb / dimm_gb), 32)
    return 8


def ram_power_w(ram_gb: float, *, arm: bool = False) -> float:
    """CodeCarbon 3's RAM power for ``ram_gb`` of memory (``RAM._calculate_ram_power``)."""
    dimms = estimate_dimm_count(ram_gb)
    per_dimm_w = RAM_W_PER_DIMM_ARM if arm else RAM_W_PER_DIMM_X86
    min_w = RAM_MIN_W_ARM if arm else 2 * RAM_W_PER_DIMM_X86
    # Marginal DIMMs cost less in bigger systems: full price for 4, then 90 %, 80 %, 70 %.
    weights = (1.0, 1.0, 1.0, 1.0, 0.9, 0.9, 0.9, 0.9) + (0.8,) * 8
    total_w = sum(per_dimm_w * (weights[i] if i < len(weights) else 0.7) for i in range(dimms))
    return max(min_w, total_w)


def machine_ram_gb() -> float | None:
    """Total physical memory in GiB (CodeCarbon's "GB" is 1024³ bytes), None if unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        return None


def _is_arm() -> bool:
    # codecarbon/external/ram.py RAM._detect_arm_cpu does the same test.
    machine = platform.machine().lower()
    return "arm" in machine or "aarch" in machine


def _ram(ram_gb: float | None, arm: bool | None) -> tuple[float, str]:
    arm = _is_arm() if arm is None else arm
    kind = "ARM" if arm else "x86"
    origin = "given"
    if ram_gb is None:
        ram_gb, origin = machine_ram_gb(), "this machine"
    if ram_gb is None:
        ram_w = RAM_MIN_W_ARM if arm else 2 * RAM_W_PER_DIMM_X86
        return ram_w, f"codecarbon RAM rule minimum {ram_w:g} W ({kind}; memory size unknown)"
    ram_w = ram_power_w(ram_gb, arm=arm)
    per_dimm_w = RAM_W_PER_DIMM_ARM if arm else RAM_W_PER_DIMM_X86
    return ram_w, (
        f"codecarbon RAM rule: {ram_gb:.1f} GiB ({origin}) ≈ {estimate_dimm_count(ram_gb)} "
        f"DIMMs × {per_dimm_w:g} W ({kind}) → {ram_w:g} W"
    )


def cpu_power(
    cpu_model: str | None = None,
    ram_gb: float | None = None,
    watts_per_thread: float | None = None,
    *,
    threads_per_package: int | None = None,
    arm: bool | None = None,
    cpuinfo: Path = _PROC_CPUINFO,
) -> CpuPower:
    """Watts per busy thread and RAM watts for ``cpu_model`` (default: this machine's CPU).

    ``watts_per_thread`` is an operator's figure and wins. ``threads_per_package`` is the
    hardware thread count of the CPU model (use it in a virtual machine when the host chip is
    known); otherwise it is read from ``cpuinfo`` on bare metal only. ``ram_gb`` defaults to
    this machine's memory and ``arm`` to this machine's architecture. Raises only for a
    non-positive ``watts_per_thread``: a missing table gives the default, with a source that
    says so.
    """
    info = read_cpuinfo(cpuinfo)
    model = info.cpu_model if cpu_model is None else cpu_model
    ram_w, ram_source = _ram(ram_gb, arm)
    default = (
        f"default {DEFAULT_WATTS_PER_THREAD:g} W per thread (CodeCarbon's DEFAULT_POWER_PER_CORE)"
    )

    try:
        table = _cpu_table()
        table_name = f"codecarbon {codecarbon_version()} cpu_power.csv"
    except (OSError, csv.Error, KeyError) as exc:
        log.warning("CPU power table unavailable (%s); using the per-thread default", exc)
        table, table_name = (), "codecarbon cpu_power.csv (unavailable)"
    row = match_cpu_model(model, table) if table else None
    raw_tdp = next((tdp for name, tdp in table if name == row), "") if row else ""
    tdp_w = _parse_tdp_w(raw_tdp) if row else None

    def result(per_thread_w: float, source: str) -> CpuPower:
        return CpuPower(model, tdp_w, per_thread_w, source, ram_w, ram_source)

    if watts_per_thread is not None:
        if not (math.isfinite(watts_per_thread) and watts_per_thread > 0):
            raise ConfigError(f"watts_per_thread must be a positive number, not {watts_per_thread}")
        return result(watts_per_thread, f"configured {watts_per_thread:g} W per thread")
    if row is None:
        why = f"CPU {model!r} not in {table_name}" if model else "CPU model unknown"
        return result(DEFAULT_WATTS_PER_THREAD, f"{default}; {why}")
    if tdp_w is None:
        return result(
            DEFAULT_WATTS_PER_THREAD,
            f"{default}; {table_name} row {row!r} has no usable TDP ({raw_tdp!r})",
        )
    threads, threads_origin = threads_per_package, "given"
    if threads is None and not info.virtualized and cpu_model in (None, info.cpu_model):
        threads, threads_origin = info.threads_per_package, "per package, from /proc/cpuinfo"
    if threads is None or threads <= 0:
        why = (
            "this is a virtual machine, whose vCPUs do not tell how many hardware threads share it"
            if info.virtualized
            else "the package's thread count is unknown"
        )
        return result(
            DEFAULT_WATTS_PER_THREAD,
            f"{default}; {table_name} has {row!r} (TDP {tdp_w:g} W) but {why}: "
            "set threads_per_package or watts_per_thread to use it",
        )
    return result(
        tdp_w / threads,
        f"{table_name}: {row!r} (TDP {tdp_w:g} W / {threads} threads, {threads_origin})",
    )
