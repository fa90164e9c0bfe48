"""The ``file:`` signal: an hourly trace read from a CSV, replayed on a chosen clock.

The CSV has a header and one row per hour: ``timestamp_utc`` (ISO 8601, on the hour) and
one value column, ``carbon_intensity_g_per_kwh`` for a carbon signal or ``usd_per_kwh`` for
a price signal. An empty value is an hour without data and stays absent. A ``.gz`` file is
read through gzip. ``file:embedded`` is the California ISO 2022 trace shipped in the package
(``data/README.md`` gives its provenance), so the feature can be tried offline.

The clock offset maps the caller's hours onto the trace's (see :func:`parse_offset`):
``auto`` reads, for any hour of any year, the trace's hour at the same hour of the same day
of the year, so a 2022 trace drives today (the trace is a loop: past its last hour it starts
again); an explicit offset (``none``, ``-1460d``, ``36h``) reads the trace hour at
``now - offset`` and leaves hours outside the trace absent.

This module does not forecast: the trace is its own forecast, perfect by construction.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smallfirst.errors import ConfigError
from smallfirst.scheduling.hourly import (
    CARBON_UNIT,
    HOUR,
    PRICE_UNIT,
    HourValue,
    floor_hour,
    hour_starts,
    utc,
)

__all__ = ["EMBEDDED", "FileSignal", "parse_offset", "read_trace"]

EMBEDDED = Path(__file__).with_name("data") / "US-CAL-CISO-2022-hourly.csv.gz"
COLUMNS = {CARBON_UNIT: "carbon_intensity_g_per_kwh", PRICE_UNIT: "usd_per_kwh"}
_OFFSET = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*([dh])$")


def parse_offset(text: str) -> timedelta | None:
    """``auto`` → None (same day of year and hour); ``none``/``0`` → 0; ``<N>d`` or ``<N>h``."""
    spec = text.strip().lower()
    if spec == "auto":
        return None
    if spec in ("none", "0"):
        return timedelta()
    match = _OFFSET.match(spec)
    if not match:
        raise ConfigError(
            f"signal clock offset {text!r}: give 'auto', 'none', or a number of days or "
            "hours such as '1461d' or '-36h'",
            param="signal_clock_offset",
        )
    amount, unit = float(match.group(1)), match.group(2)
    return timedelta(days=amount) if unit == "d" else timedelta(hours=amount)


def read_trace(path: Path, unit: str = CARBON_UNIT) -> dict[datetime, float]:
    """Hour start (UTC) → value, from a trace CSV; empty values are left out."""
    column = COLUMNS.get(unit)
    if column is None:
        raise ConfigError(f"no trace column for the unit {unit!r}")
    try:
        raw = path.read_bytes()
        text = gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()
    except (OSError, UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise ConfigError(f"signal file {path}: cannot read it ({exc})") from None
    rows = csv.DictReader(io.StringIO(text))
    if not rows.fieldnames or "timestamp_utc" not in rows.fieldnames:
        raise ConfigError(f"signal file {path}: no 'timestamp_utc' column in its header")
    if column not in rows.fieldnames:
        raise ConfigError(
            f"signal file {path}: no {column!r} column for a {unit} signal "
            f"(columns: {', '.join(rows.fieldnames)})"
        )
    values: dict[datetime, float] = {}
    for number, row in enumerate(rows, start=2):
        cell = (row.get(column) or "").strip()
        if not cell:
            continue  # a missing hour is missing, never zero
        try:
            start = utc(datetime.fromisoformat(row["timestamp_utc"].strip()))
            value = float(cell)
        except (ValueError, AttributeError):
            raise ConfigError(
                f"signal file {path}, line {number}: expected an ISO timestamp and a number, "
                f"got {row.get('timestamp_utc')!r}, {cell!r}"
            ) from None
        if start != floor_hour(start) or value < 0 or value != value:
            raise ConfigError(
                f"signal file {path}, line {number}: the hour must start on the hour and the "
                f"value be a number >= 0"
            )
        values[start] = value
    if not values:
        raise ConfigError(f"signal file {path}: no hour has a value")
    return values


@dataclass(frozen=True)
class FileSignal:
    """A trace replayed on a clock: ``offset`` None means same day of year and hour."""

    name: str
    unit: str
    values: dict[datetime, float] = field(repr=False)
    offset: timedelta | None = None

    @classmethod
    def read(
        cls, path: Path, *, unit: str = CARBON_UNIT, offset: timedelta | None = None, name: str
    ) -> FileSignal:
        return cls(name=name, unit=unit, values=read_trace(path, unit), offset=offset)

    @property
    def first_hour(self) -> datetime:
        return min(self.values)

    @property
    def last_hour(self) -> datetime:
        return max(self.values)

    def trace_hour(self, hour: datetime) -> datetime:
        """The trace's hour read for the caller's hour ``hour``."""
        if self.offset is not None:
            return floor_hour(hour) - self.offset
        first = self.first_hour
        year_start = datetime(first.year, 1, 1, tzinfo=UTC)
        period = datetime(first.year + 1, 1, 1, tzinfo=UTC) - year_start
        h = floor_hour(hour)
        into_year = h - datetime(h.year, 1, 1, tzinfo=UTC)
        # a leap year's last day wraps onto the trace's first: a year-long loop
        return year_start + (into_year % period) // HOUR * HOUR

    def hours(self, start_utc: datetime, end_utc: datetime) -> list[HourValue]:
        out = []
        for h in hour_starts(start_utc, end_utc):
            value = self.values.get(self.trace_hour(h))
            if value is not None:
                out.append(HourValue(h, value))
        return out
