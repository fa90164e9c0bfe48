"""Watts per thread and RAM watts, checked against CodeCarbon's table and its own code."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from smallfirst.errors import ConfigError
from smallfirst.metering.power import (
    DEFAULT_WATTS_PER_THREAD,
    cpu_power,
    match_cpu_model,
    ram_power_w,
    read_cpuinfo,
)

pytestmark = pytest.mark.fast

XEON = "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"


def table_tdp_w(name: str) -> float:
    """The TDP of a row, read from CodeCarbon's file without going through smallfirst."""
    spec = importlib.util.find_spec("codecarbon")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "data/hardware/cpu_power.csv"
    with path.open(newline="") as f:
        return next(float(row["TDP"]) for row in csv.DictReader(f) if row["Name"] == name)


def cpuinfo(tmp_path: Path, model: str, siblings: int, vm: bool) -> Path:
    flags = "fpu sse2 avx2" + (" hypervisor" if vm else "")
    text = f"processor\t: 0\nmodel name\t: {model}\nsiblings\t: {siblings}\nflags\t\t: {flags}\n"
    path = tmp_path / "cpuinfo"
    path.write_text(text + "\n" + text.replace("processor\t: 0", "processor\t: 1"))
    return path


def test_read_cpuinfo(tmp_path: Path) -> None:
    info = read_cpuinfo(cpuinfo(tmp_path, XEON, 64, vm=True))
    assert (info.cpu_model, info.threads_per_package, info.virtualized) == (XEON, 64, True)
    assert read_cpuinfo(tmp_path / "absent").threads_per_package is None


def test_model_in_table_with_known_threads(tmp_path: Path) -> None:
    bare = cpuinfo(tmp_path, "AMD EPYC 7763 64-Core Processor", 128, vm=False)
    power = cpu_power("AMD EPYC 7763", ram_gb=16, threads_per_package=128, cpuinfo=bare)
    assert power.tdp_w == table_tdp_w("AMD EPYC 7763") == 280
    assert power.watts_per_thread == pytest.approx(280 / 128)
    assert "'AMD EPYC 7763' (TDP 280 W / 128 threads" in power.source


def test_brand_string_on_bare_metal_uses_siblings(tmp_path: Path) -> None:
    power = cpu_power(ram_gb=16, cpuinfo=cpuinfo(tmp_path, XEON, 64, vm=False))
    assert power.cpu_model == XEON
    assert power.tdp_w == table_tdp_w("Intel Xeon Platinum 8375C")
    assert power.watts_per_thread == pytest.approx(power.tdp_w / 64)
    assert "from /proc/cpuinfo" in power.source


def test_matched_model_in_a_vm_falls_back_to_the_default(tmp_path: Path) -> None:
    power = cpu_power(ram_gb=16, cpuinfo=cpuinfo(tmp_path, XEON, 2, vm=True))
    assert power.tdp_w == table_tdp_w("Intel Xeon Platinum 8375C")
    assert power.watts_per_thread == DEFAULT_WATTS_PER_THREAD
    assert "virtual machine" in power.source
    given = cpu_power(ram_gb=16, threads_per_package=64, cpuinfo=cpuinfo(tmp_path, XEON, 2, True))
    assert given.watts_per_thread == pytest.approx(given.tdp_w / 64)  # type: ignore[operator]


def test_model_not_in_table(tmp_path: Path) -> None:
    for model in ("Acme Quantum 9000", "AMD EPYC", ""):  # "AMD EPYC" is in many rows: ambiguous
        power = cpu_power(model, ram_gb=16, cpuinfo=tmp_path / "absent")
        assert power.tdp_w is None
        assert power.watts_per_thread == DEFAULT_WATTS_PER_THREAD == 4.0
        assert power.source.startswith("default 4 W per thread")


def test_configured_override(tmp_path: Path) -> None:
    power = cpu_power("AMD EPYC 7763", ram_gb=16, watts_per_thread=2.5, cpuinfo=tmp_path / "x")
    assert power.watts_per_thread == 2.5
    assert power.tdp_w == 280
    assert power.source.startswith("configured")
    with pytest.raises(ConfigError, match="watts_per_thread"):
        cpu_power("AMD EPYC 7763", watts_per_thread=0)


def test_ram_rule() -> None:
    assert ram_power_w(1) == 10  # the x86 floor of two 5 W DIMMs
    assert ram_power_w(16) == 10  # 2 DIMMs
    assert ram_power_w(32) == 20  # 4 DIMMs
    assert ram_power_w(128) == pytest.approx(4 * 5 + 4 * 4.5)  # 8 DIMMs, the last 4 at 90 %
    assert ram_power_w(2048) == pytest.approx(20 + 18 + 8 * 4)  # 16 × 128 GB, 80 % past 8
    assert ram_power_w(8, arm=True) == 3.0
    power = cpu_power("Acme", ram_gb=32, arm=False)
    assert power.ram_w == 20
    assert "4 DIMMs" in power.ram_source


MODELS = [
    "AMD EPYC",
    "AMD EPYC 7763",
    "AMD EPYC 7763 64-Core Processor",
    XEON,
    "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz",
    "Intel Core i5-750S",
    "AMD Ryzen 9 7950X 16-Core Processor",
    "Apple M2",
    "Acme Quantum 9000",
    "QEMU Virtual CPU version 2.5+",
]


def test_same_answers_as_codecarbon() -> None:
    from codecarbon.core.cpu import TDP
    from codecarbon.external.ram import RAM
    from codecarbon.input import DataSource

    df = DataSource().get_cpu_power_data()  # type: ignore[no-untyped-call]
    names = list(df["Name"])
    # A spread of real rows, dressed up the way /proc/cpuinfo would show them.
    models = MODELS + [
        variant
        for name in names[::301]
        for variant in (name, name.upper(), f"{name} CPU @ 2.20GHz", f"{name} 8-Core Processor")
    ]
    tdp = TDP.__new__(TDP)  # skip __init__, which detects this machine's CPU
    for model in models:
        assert match_cpu_model(model) == tdp._get_matching_cpu(model, df), model
    x86, arm = RAM(), RAM()
    x86.is_arm_cpu, arm.is_arm_cpu = False, True
    for gb in (0.5, 2, 3, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024, 1536, 4096, 8192):
        assert ram_power_w(gb) == pytest.approx(x86._calculate_ram_power(gb)), gb
        assert ram_power_w(gb, arm=True) == pytest.approx(arm._calculate_ram_power(gb)), gb


def test_import_does_not_load_codecarbon() -> None:
    code = (
        "import smallfirst.metering.power, smallfirst.metering.carbon, "
        "smallfirst.metering.counters, sys; "
        "print(sorted(m for m in ('codecarbon', 'pandas', 'rapidfuzz', 'pynvml') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lookup_does_not_load_codecarbon() -> None:
    code = (
        "import smallfirst.metering.power as p, smallfirst.metering.carbon as c, sys; "
        "p.cpu_power('AMD EPYC 7763'); c.grid_intensity('FRA'); "
        "print('codecarbon' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
