"""RAPL and NVML counters against a fake powercap tree and a fake pynvml module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from smallfirst.metering.counters import Counter, nvml_counters, rapl_counters

pytestmark = pytest.mark.fast

MAX_UJ = 2_000_000


def zone(root: Path, dirname: str, name: str, energy_uj: int | None, max_uj: int | None) -> Path:
    path = root / dirname
    path.mkdir()
    (path / "name").write_text(f"{name}\n")
    if energy_uj is not None:
        (path / "energy_uj").write_text(f"{energy_uj}\n")
    if max_uj is not None:
        (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    zone(tmp_path, "intel-rapl:0", "package-0", 1_900_000, MAX_UJ)
    zone(tmp_path, "intel-rapl:0:0", "core", 500_000, MAX_UJ)
    zone(tmp_path, "intel-rapl:0:1", "dram", 300_000, MAX_UJ)
    # Unreadable like a root-only energy_uj (tests may run as root, so chmod would not do).
    unreadable = zone(tmp_path, "intel-rapl:1", "package-1", None, MAX_UJ)
    (unreadable / "energy_uj").mkdir()
    zone(tmp_path, "intel-rapl:2", "psys", 42, MAX_UJ)
    zone(tmp_path, "intel-rapl-mmio:0", "package-0", 7, MAX_UJ)  # MMIO duplicate of the package
    (tmp_path / "intel-rapl").mkdir()  # the control-type directory, not a zone
    return tmp_path


def by_name(counters: list[Counter]) -> dict[str, Counter]:
    return {c.name: c for c in counters}


def test_rapl_finds_package_and_dram_only(powercap: Path) -> None:
    counters = by_name(rapl_counters(powercap))
    assert sorted(counters) == ["rapl:dram-0", "rapl:package-0"]
    assert counters["rapl:package-0"].scope == "cpu-package"
    assert counters["rapl:dram-0"].scope == "dram"
    assert counters["rapl:package-0"].read_j() == pytest.approx(1.9)
    assert counters["rapl:dram-0"].read_j() == pytest.approx(0.3)


def test_rapl_counts_across_a_wrap(powercap: Path) -> None:
    package = by_name(rapl_counters(powercap))["rapl:package-0"]
    energy = powercap / "intel-rapl:0" / "energy_uj"
    before_j = package.read_j()
    energy.write_text("1950000\n")
    mid_j = package.read_j()
    energy.write_text("100000\n")  # wrapped: 50_000 µJ to the top, then 100_000 µJ more
    after_j = package.read_j()
    energy.write_text("100000\n")
    still_j = package.read_j()
    assert mid_j - before_j == pytest.approx(0.05)
    assert after_j - mid_j == pytest.approx(0.15)
    assert still_j == after_j


def test_rapl_dram_as_a_top_level_zone(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "package-0", 10, MAX_UJ)
    zone(tmp_path, "intel-rapl:1", "dram", 20, MAX_UJ)
    assert sorted(by_name(rapl_counters(tmp_path))) == ["rapl:dram-1", "rapl:package-0"]


def test_rapl_without_range_is_skipped(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "package-0", 10, None)
    zone(tmp_path, "intel-rapl:1", "package-1", 10, 0)
    assert rapl_counters(tmp_path) == []


def test_rapl_absent_tree(tmp_path: Path) -> None:
    assert rapl_counters(tmp_path / "nope") == []
    assert rapl_counters(tmp_path) == []


class FakeNvml:
    """The few pynvml functions the counters use; energies in millijoules per device."""

    class NVMLError(Exception):
        pass

    def __init__(self, energies_mj: list[int | None], init_error: bool = False) -> None:
        self.energies_mj = energies_mj  # None = NVML_ERROR_NOT_SUPPORTED (pre-Volta)
        self.init_error = init_error

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.energies_mj)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> tuple[str, int]:
        return ("handle", index)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: tuple[str, int]) -> int:
        value = self.energies_mj[handle[1]]
        if value is None:
            raise self.NVMLError("Not Supported")
        return value


def test_nvml_two_gpus() -> None:
    fake = FakeNvml([1_000, 5_000])
    counters = by_name(nvml_counters(fake))
    assert sorted(counters) == ["nvml:0", "nvml:1"]
    assert {c.scope for c in counters.values()} == {"gpu-board"}
    start_j = counters["nvml:1"].read_j()
    fake.energies_mj[1] = 7_500
    assert counters["nvml:1"].read_j() - start_j == pytest.approx(2.5)
    assert counters["nvml:0"].read_j() == pytest.approx(1.0)


def test_nvml_driver_reload_does_not_go_backwards() -> None:
    fake = FakeNvml([9_000])
    (gpu,) = nvml_counters(fake)
    before_j = gpu.read_j()
    fake.energies_mj[0] = 500  # the driver was reloaded and counts from zero again
    assert gpu.read_j() == pytest.approx(before_j + 0.5)


def test_nvml_init_fails() -> None:
    assert nvml_counters(FakeNvml([1], init_error=True)) == []


def test_nvml_not_supported() -> None:
    assert nvml_counters(FakeNvml([None])) == []
    assert [c.name for c in nvml_counters(FakeNvml([None, 3]))] == ["nvml:1"]


def test_nvml_no_gpu() -> None:
    assert nvml_counters(FakeNvml([])) == []


def test_nvml_module_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    assert nvml_counters() == []
