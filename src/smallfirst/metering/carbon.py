"""Grid carbon intensity (g CO2e per kWh) of a country, from CodeCarbon's shipped figures.

The per-country figures are the ``carbon_intensity`` field of CodeCarbon's
``data/private_infra/global_energy_mix.json`` (keyed by ISO 3166-1 alpha-3 code, with the
``year`` of the figure), which is what CodeCarbon itself uses for a country on private
infrastructure (``Emissions._global_energy_mix_to_emissions_rate`` in
``codecarbon/core/emissions.py``). With no country, the world average is
``world_average`` of ``data/private_infra/carbon_intensity_per_source.json`` (475 g/kWh, IEA
2019), CodeCarbon's own fallback; the constant below is used only if that file is missing.

These are location-based annual averages: what an average kWh from that country's grid
emitted over a year. This module does not know the hour's real mix, the cloud region's own
supply, or market-based (contract) figures, and does not guess the country from the network.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from smallfirst.errors import ConfigError
from smallfirst.metering.codecarbon_data import codecarbon_data_file, codecarbon_version

WORLD_AVERAGE_G_PER_KWH = 475.0  # carbon_intensity_per_source.json world_average (IEA 2019)

_COUNTRIES = "private_infra/global_energy_mix.json"
_PER_SOURCE = "private_infra/carbon_intensity_per_source.json"


@dataclass(frozen=True)
class GridIntensity:
    """The carbon intensity charged per kWh, and where it came from."""

    g_per_kwh: float
    country: str | None  # ISO 3166-1 alpha-3, e.g. "FRA"; None = world average
    source: str
    basis: str = "location-based annual average"


@functools.lru_cache(maxsize=1)
def _countries() -> dict[str, dict[str, Any]]:
    path = codecarbon_data_file(_COUNTRIES)
    data: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def known_countries() -> dict[str, str]:
    """ISO-3 code → country name for every country that has a figure."""
    return {
        code: str(entry.get("country_name", code))
        for code, entry in sorted(_countries().items())
        if isinstance(entry.get("carbon_intensity"), int | float)
    }


def _world_average() -> GridIntensity:
    try:
        path = codecarbon_data_file(_PER_SOURCE)
        data = json.loads(path.read_text(encoding="utf-8"))
        g_per_kwh = float(data["world_average"])
        source = (
            f"world average: codecarbon {codecarbon_version()} carbon_intensity_per_source.json "
            f"({data.get('world_average_source', 'source not given')})"
        )
    except (OSError, KeyError, TypeError, ValueError):
        # Still CodeCarbon's figure, kept here so a broken install does not stop the receipt.
        g_per_kwh, source = WORLD_AVERAGE_G_PER_KWH, "world average (CodeCarbon's 475 g/kWh)"
    return GridIntensity(g_per_kwh=g_per_kwh, country=None, source=source)


def _unknown(given: str) -> ConfigError:
    hint = ""
    by_name = {name.lower(): code for code, name in known_countries().items()}
    if given.strip().lower() in by_name:
        hint = f" (did you mean {by_name[given.strip().lower()]}?)"
    elif len(given.strip()) == 2:
        hint = " (two-letter codes are not accepted: use the three-letter one, e.g. FRA not FR)"
    return ConfigError(
        f"unknown country code {given!r}{hint}: give an ISO 3166-1 alpha-3 code that "
        "codecarbon's global_energy_mix.json has a figure for; "
        "smallfirst.metering.carbon.known_countries() lists them, "
        "or leave the country unset for the world average"
    )


def grid_intensity(country: str | None = None) -> GridIntensity:
    """The grid intensity for an ISO-3 country code (any case), or the world average."""
    if country is None:
        return _world_average()
    code = country.strip().upper()
    entry = _countries().get(code)
    value = entry.get("carbon_intensity") if entry else None
    if entry is None or not isinstance(value, int | float):
        raise _unknown(country)
    year = entry.get("year")
    name = entry.get("country_name", code)
    return GridIntensity(
        g_per_kwh=float(value),
        country=code,
        source=(
            f"codecarbon {codecarbon_version()} global_energy_mix.json "
            f"({code}, {name}{f', {year}' if year else ''})"
        ),
    )
