"""Signals by spec: constants, trace files on their clocks, the embedded trace."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smallfirst.errors import ConfigError
from smallfirst.metering.carbon import grid_intensity
from smallfirst.scheduling.hourly import HOUR
from smallfirst.scheduling.signal import CARBON_UNIT, PRICE_UNIT, open_signal, signals_from
from smallfirst.settings import Settings

pytestmark = pytest.mark.fast

T0 = datetime(2022, 1, 1, tzinfo=UTC)


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path, **kw)  # type: ignore[arg-type]


def write_trace(path: Path, column: str, values: list[str]) -> Path:
    rows = [f"{(T0 + i * HOUR).strftime('%Y-%m-%dT%H:%M:%SZ')},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join([f"timestamp_utc,{column}", *rows]) + "\n")
    return path


def test_constant_is_the_receipts_figure_or_the_given_one(tmp_path: Path) -> None:
    s = settings(tmp_path, country="FRA")
    default = open_signal("constant", s)
    assert default.unit == CARBON_UNIT
    hours = default.hours(T0 + timedelta(minutes=30), T0 + 3 * HOUR)
    assert [h.start_utc for h in hours] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert {h.value for h in hours} == {grid_intensity("FRA").g_per_kwh}
    assert open_signal("constant:123.5", s).hours(T0, T0 + HOUR)[0].value == 123.5
    price = open_signal("constant", s, unit=PRICE_UNIT)
    assert price.hours(T0, T0 + HOUR)[0].value == s.electricity_usd_per_kwh


def test_file_signal_replays_without_offset_and_keeps_gaps(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.csv", "carbon_intensity_g_per_kwh", ["100", "", "300"])
    sig = open_signal(f"file:{path}", settings(tmp_path, signal_clock_offset="none"))
    got = sig.hours(T0, T0 + 5 * HOUR)
    assert [(h.start_utc, h.value) for h in got] == [(T0, 100.0), (T0 + 2 * HOUR, 300.0)]


def test_auto_offset_reads_the_same_day_of_year_and_hour(tmp_path: Path) -> None:
    sig = open_signal("file:embedded", settings(tmp_path))
    assert sig.name == "file:embedded"
    today = datetime(2026, 1, 1, tzinfo=UTC)
    got = sig.hours(today, today + 2 * HOUR)
    assert [h.value for h in got] == [222.3, 260.9]  # the trace's first two hours
    assert got[0].start_utc == today
    # the year loops: New Year's Eve's last hour then the first hour again
    edge = datetime(2026, 12, 31, 23, tzinfo=UTC)
    looped = sig.hours(edge, edge + 2 * HOUR)
    assert len(looped) == 2 and looped[1].value == 222.3
    # a missing hour of the trace (2022-01-05 10:00) stays missing in 2026
    gap = datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert [h.start_utc for h in sig.hours(gap, gap + 2 * HOUR)] == [gap + HOUR]


def test_explicit_offset_shifts_and_leaves_outside_hours_absent(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.csv", "carbon_intensity_g_per_kwh", ["100", "200"])
    sig = open_signal(f"file:{path}", settings(tmp_path, signal_clock_offset="2d"))
    later = T0 + timedelta(days=2)
    assert [h.value for h in sig.hours(later, later + 3 * HOUR)] == [100.0, 200.0]
    assert sig.hours(T0, T0 + 2 * HOUR) == []


def test_price_file_and_gzip(tmp_path: Path) -> None:
    plain = write_trace(tmp_path / "p.csv", "usd_per_kwh", ["0.1", "0.2"])
    packed = tmp_path / "p.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    s = settings(tmp_path, signal_clock_offset="none", price_signal=f"file:{packed}")
    carbon, price = signals_from(s)
    assert carbon.name == "constant"
    assert price is not None and price.unit == PRICE_UNIT
    assert [h.value for h in price.hours(T0, T0 + 2 * HOUR)] == [0.1, 0.2]


@pytest.mark.parametrize(
    ("spec", "content", "message"),
    [
        ("file:", None, "give a path"),
        ("file:MISSING", None, "cannot read"),
        ("nonsense", None, "unknown signal"),
        ("constant:abc", None, "not a number"),
        ("file:PATH", "timestamp_utc,other\n2022-01-01T00:00:00Z,1\n", "no 'carbon_intensity"),
        ("file:PATH", "timestamp_utc,carbon_intensity_g_per_kwh\nyesterday,1\n", "line 2"),
        (
            "file:PATH",
            "timestamp_utc,carbon_intensity_g_per_kwh\n2022-01-01T00:30:00Z,1\n",
            "on the hour",
        ),
        (
            "file:PATH",
            "timestamp_utc,carbon_intensity_g_per_kwh\n2022-01-01T00:00:00Z,\n",
            "no hour",
        ),
    ],
)
def test_bad_specs_and_files_name_the_problem(
    tmp_path: Path, spec: str, content: str | None, message: str
) -> None:
    if content is not None:
        path = tmp_path / "bad.csv"
        path.write_text(content)
        spec = spec.replace("PATH", str(path))
    else:
        spec = spec.replace("MISSING", str(tmp_path / "nope.csv"))
    with pytest.raises(ConfigError, match=message):
        open_signal(spec, settings(tmp_path))


def test_bad_offset_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="clock offset"):
        open_signal("file:embedded", settings(tmp_path, signal_clock_offset="yesterday"))
