"""Carbon and price signals by name: :func:`open_signal` turns a spec into a :class:`Signal`.

Specs (the ``carbon_signal`` and ``price_signal`` settings):

- ``constant``: the receipts' own figure every hour (the grid intensity of ``country``, or
  ``electricity_usd_per_kwh`` for a price); ``constant:300`` a given value. With a constant
  signal a batch runs at once, as it would without a scheduler.
- ``file:PATH``: a trace CSV (:mod:`.tracefile`) replayed on ``signal_clock_offset``;
  ``file:embedded`` the California ISO 2022 trace shipped in the package.
- ``electricitymaps:ZONE``, ``watttime:REGION``, ``uk`` (Great Britain, national) or
  ``uk:REGIONID``: forecasts from those APIs (:mod:`.forecasts`), keys read from the
  environment variables the settings name.

This module re-exports the protocol and value types (:mod:`.hourly`) so that callers need
only this one; it does not plan, and opening a ``file:`` signal reads the file at once
(so a bad file fails at startup), while an HTTP signal calls nothing until asked for hours.
"""

from __future__ import annotations

from pathlib import Path

from smallfirst.errors import ConfigError
from smallfirst.metering.carbon import grid_intensity
from smallfirst.scheduling.forecasts import open_forecast
from smallfirst.scheduling.hourly import CARBON_UNIT, PRICE_UNIT, ConstantSignal, HourValue, Signal
from smallfirst.scheduling.tracefile import EMBEDDED, FileSignal, parse_offset
from smallfirst.settings import Settings

__all__ = [
    "CARBON_UNIT",
    "PRICE_UNIT",
    "ConstantSignal",
    "HourValue",
    "Signal",
    "open_signal",
    "signals_from",
]


def open_signal(spec: str, settings: Settings, *, unit: str = CARBON_UNIT) -> Signal:
    """The signal ``spec`` names; ``unit`` says whether it is carbon or a price.

    A spec that names nothing known, a file that cannot be read, or a constant that is not
    a number is a :class:`~smallfirst.errors.ConfigError` naming the spec.
    """
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "constant":
        return ConstantSignal(_constant(arg, settings, unit), unit=unit, name=spec.strip())
    if kind == "file":
        if not arg:
            raise ConfigError(f"signal {spec!r}: give a path, as in file:PATH or file:embedded")
        path = EMBEDDED if arg == "embedded" else Path(arg).expanduser()
        if arg == "embedded" and unit != CARBON_UNIT:
            raise ConfigError("file:embedded is a carbon trace; a price signal needs its own file")
        offset = parse_offset(settings.signal_clock_offset)
        return FileSignal.read(path, unit=unit, offset=offset, name=f"file:{arg}")
    if unit != CARBON_UNIT:
        raise ConfigError(f"price signal {spec!r}: give constant[:USD] or file:PATH")
    return open_forecast(kind, arg, settings, spec=spec.strip())


def signals_from(settings: Settings) -> tuple[Signal, Signal | None]:
    """The carbon signal and (when set) the price signal the settings name."""
    carbon = open_signal(settings.carbon_signal, settings)
    price = settings.price_signal
    return carbon, open_signal(price, settings, unit=PRICE_UNIT) if price else None


def _constant(arg: str, settings: Settings, unit: str) -> float:
    if not arg:
        if unit == PRICE_UNIT:
            return settings.electricity_usd_per_kwh
        return grid_intensity(settings.country).g_per_kwh
    try:
        value = float(arg)
    except ValueError:
        raise ConfigError(f"signal constant:{arg}: not a number") from None
    if value < 0 or value != value:
        raise ConfigError(f"signal constant:{arg}: must be a number >= 0")
    return value
