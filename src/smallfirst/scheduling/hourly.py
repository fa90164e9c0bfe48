"""The words every signal speaks: an hour's value, the ``Signal`` protocol, a constant one.

A signal answers one question: what is the value (grid carbon intensity in g CO2e/kWh, or
an electricity price in USD/kWh) of each hour in a range, past or forecast. An hour it has no
figure for is left out of the answer, never reported as 0: a planner must not mistake a gap
in the data for a perfectly clean hour.

This module holds only the types and the constant signal; reading trace files
(:mod:`.tracefile`), calling forecast APIs (:mod:`.forecasts`) and choosing hours
(:mod:`.planner`) live elsewhere. :func:`smallfirst.scheduling.signal.open_signal` builds a
signal from its spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = [
    "CARBON_UNIT",
    "HOUR",
    "PRICE_UNIT",
    "ConstantSignal",
    "HourValue",
    "Signal",
    "floor_hour",
    "hour_starts",
    "utc",
]

CARBON_UNIT = "gCO2e/kWh"
PRICE_UNIT = "USD/kWh"
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class HourValue:
    """One hour of a signal: its start (tz-aware UTC, on the hour) and its value."""

    start_utc: datetime
    value: float  # g CO2e/kWh for a carbon signal, USD/kWh for a price signal


class Signal(Protocol):
    """Hourly values, past and forecast, of grid carbon intensity or of a price."""

    # read-only properties, so that frozen dataclasses satisfy the protocol
    @property
    def name(self) -> str:
        """ "constant", "file:PATH", "electricitymaps:ZONE", ..."""
        ...

    @property
    def unit(self) -> str:
        """CARBON_UNIT or PRICE_UNIT."""
        ...

    def hours(self, start_utc: datetime, end_utc: datetime) -> list[HourValue]:
        """The hours in [start, end), ascending; an hour without a figure is absent."""
        ...


def utc(moment: datetime) -> datetime:
    """``moment`` as tz-aware UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def floor_hour(moment: datetime) -> datetime:
    """The start (UTC) of the hour ``moment`` falls in."""
    return utc(moment).replace(minute=0, second=0, microsecond=0)


def hour_starts(start_utc: datetime, end_utc: datetime) -> list[datetime]:
    """Every hour start h with h in [floor(start), end), ascending.

    The hour ``start`` falls in is included, so a range that begins mid-hour still sees
    the hour it begins in.
    """
    first, end = floor_hour(start_utc), utc(end_utc)
    count = max(0, math.ceil((end - first) / HOUR))
    return [first + i * HOUR for i in range(count)]


@dataclass(frozen=True)
class ConstantSignal:
    """The same value every hour: with it, a planner has no reason to wait."""

    value: float
    unit: str = CARBON_UNIT
    name: str = "constant"

    def hours(self, start_utc: datetime, end_utc: datetime) -> list[HourValue]:
        return [HourValue(h, self.value) for h in hour_starts(start_utc, end_utc)]
