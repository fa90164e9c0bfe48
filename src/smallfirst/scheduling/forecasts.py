"""Forecast signals over HTTP: the spec's kind picks the API, the settings give URL and keys.

``electricitymaps:ZONE`` (token in the variable ``electricitymaps_token_env`` names),
``watttime:REGION`` (user and password in ``watttime_username_env`` and
``watttime_password_env``; the signal is WattTime's marginal rate, see :mod:`.providers`),
``uk`` or ``uk:REGIONID`` (Great Britain's Carbon Intensity API, no key).

Each signal keeps its zone's last forecast for ``signal_cache_s`` (one answer per signal, so
the cache is bounded by the number of configured signals, never by client input), and asks
again when it is older. Calls are synchronous (httpx, ``signal_timeout_s`` each): a planner
asks once per batch and per re-plan, not per request. A failure is a
:class:`~smallfirst.errors.SignalError` (the planner then runs the batch at once); a missing
key is a ``ConfigError`` when the signal is opened. This module does not parse the APIs'
formats (:mod:`.providers` does).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from smallfirst.errors import ConfigError, SignalError
from smallfirst.scheduling import providers
from smallfirst.scheduling.hourly import CARBON_UNIT, HourValue, floor_hour, utc
from smallfirst.settings import Settings

__all__ = ["ForecastSignal", "open_forecast"]

Fetch = Callable[[httpx.Client, datetime], list[HourValue]]


class ForecastSignal:
    """A forecast API behind a one-answer cache; ``hours`` filters the last answer."""

    def __init__(
        self,
        name: str,
        base_url: str,
        fetch: Fetch,
        *,
        timeout_s: float,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._name = name
        self._base_url = base_url.rstrip("/")
        self._fetch = fetch
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._last: tuple[float, list[HourValue]] | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def unit(self) -> str:
        return CARBON_UNIT

    def hours(self, start_utc: datetime, end_utc: datetime) -> list[HourValue]:
        start, end = floor_hour(start_utc), utc(end_utc)
        return [v for v in self.forecast() if start <= v.start_utc < end]

    def forecast(self) -> list[HourValue]:
        """The zone's forecast: the cached answer while fresh, else a new one."""
        with self._lock:  # one call at a time; concurrent planners share its answer
            if self._last is not None and self._clock() - self._last[0] < self._cache_s:
                return self._last[1]
            hours = self._call()
            self._last = (self._clock(), hours)
            return hours

    def _call(self) -> list[HourValue]:
        try:
            with httpx.Client(base_url=self._base_url, timeout=self._timeout_s) as client:
                return self._fetch(client, self._now())
        except SignalError as exc:
            raise SignalError(f"signal {self._name}: {exc.message}") from None
        except httpx.TimeoutException:
            raise SignalError(
                f"signal {self._name}: {self._base_url} did not answer within {self._timeout_s:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise SignalError(f"signal {self._name}: {self._base_url}: {exc}") from None


def open_forecast(kind: str, arg: str, settings: Settings, *, spec: str) -> ForecastSignal:
    """The forecast signal of ``kind`` for zone ``arg``; unknown kinds are a ConfigError."""
    name, url, fetch = _api(kind, arg, settings, spec)
    return ForecastSignal(
        name, url, fetch, timeout_s=settings.signal_timeout_s, cache_s=settings.signal_cache_s
    )


def _api(kind: str, arg: str, settings: Settings, spec: str) -> tuple[str, str, Fetch]:
    """The signal's name, the API's base URL, and how to ask it."""
    if kind == "electricitymaps":
        zone = _need(arg, spec, "a zone, as in electricitymaps:DE")
        token = _env(settings.electricitymaps_token_env, spec)
        return (
            f"electricitymaps:{zone}",
            settings.electricitymaps_url,
            lambda client, now: providers.electricitymaps(client, zone, token),
        )
    if kind == "watttime":
        region = _need(arg, spec, "a region, as in watttime:CAISO_NORTH")
        user = _env(settings.watttime_username_env, spec)
        password = _env(settings.watttime_password_env, spec)
        return (
            f"watttime:{region} (moer)",
            settings.watttime_url,
            lambda client, now: providers.watttime(client, region, user, password),
        )
    if kind == "uk":
        region_id = arg or None
        return (
            f"uk:{region_id}" if region_id else "uk",
            settings.uk_carbon_intensity_url,
            lambda client, now: providers.uk_carbon_intensity(client, now, region_id),
        )
    raise ConfigError(
        f"unknown signal {spec!r}: give constant[:VALUE], file:PATH, file:embedded, "
        "electricitymaps:ZONE, watttime:REGION or uk[:REGIONID]",
        param="carbon_signal",
    )


def _need(arg: str, spec: str, what: str) -> str:
    if not arg:
        raise ConfigError(f"signal {spec!r}: give {what}", param="carbon_signal")
    return arg


def _env(variable: str, spec: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise ConfigError(
            f"signal {spec!r} needs the environment variable {variable} (unset or empty)",
            param="carbon_signal",
        )
    return value
