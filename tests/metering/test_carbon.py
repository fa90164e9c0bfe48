"""Grid intensity figures against CodeCarbon's data file, read independently."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from smallfirst.errors import ConfigError
from smallfirst.metering.carbon import grid_intensity, known_countries

pytestmark = pytest.mark.fast


def energy_mix() -> dict[str, Any]:
    spec = importlib.util.find_spec("codecarbon")
    assert spec is not None and spec.submodule_search_locations
    base = Path(next(iter(spec.submodule_search_locations)))
    data: dict[str, Any] = json.loads(
        (base / "data/private_infra/global_energy_mix.json").read_text()
    )
    return data


def test_world_average_by_default() -> None:
    world = grid_intensity()
    assert world.g_per_kwh == 475
    assert world.country is None
    assert "world average" in world.source
    assert world.basis == "location-based annual average"


def test_country_matches_the_file() -> None:
    france = energy_mix()["FRA"]
    for given in ("FRA", "fra", " Fra "):
        got = grid_intensity(given)
        assert got.country == "FRA"
        assert got.g_per_kwh == france["carbon_intensity"]
        assert f"FRA, France, {france['year']}" in got.source
    assert grid_intensity("DEU").g_per_kwh == energy_mix()["DEU"]["carbon_intensity"]


def test_known_countries_lists_the_file() -> None:
    countries = known_countries()
    assert countries["FRA"] == "France"
    assert set(countries) == set(energy_mix())


@pytest.mark.parametrize(
    ("given", "hint"),
    [("XYZ", "known_countries()"), ("FR", "three-letter"), ("France", "did you mean FRA")],
)
def test_unknown_country(given: str, hint: str) -> None:
    with pytest.raises(ConfigError, match="ISO 3166-1 alpha-3") as err:
        grid_intensity(given)
    assert hint in str(err.value)
