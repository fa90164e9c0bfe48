"""Forecast signals from HTTP APIs, chosen by the spec's kind (filled in by step 3)."""

from __future__ import annotations

from smallfirst.errors import ConfigError
from smallfirst.scheduling.hourly import Signal
from smallfirst.settings import Settings

__all__ = ["open_forecast"]


def open_forecast(kind: str, arg: str, settings: Settings, *, spec: str) -> Signal:
    """The forecast signal of ``kind`` for zone ``arg``."""
    raise ConfigError(
        f"unknown signal {spec!r}: give constant[:VALUE], file:PATH or file:embedded",
        param="carbon_signal",
    )
