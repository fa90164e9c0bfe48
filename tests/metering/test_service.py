"""Metering and profiling refuse bad settings and unusable models with domain errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from smallfirst.catalog import Catalog
from smallfirst.errors import ConfigError, UnknownModelError
from smallfirst.metering.meter import Accountant, EstimateConstants
from smallfirst.metering.profiling import profile_model
from smallfirst.metering.service import Metering
from smallfirst.settings import Settings


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, hardware_counters=False, **values)  # type: ignore[arg-type]


def test_unknown_reference_model_is_a_config_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path, reference_model="no-such-model")
    with pytest.raises(ConfigError, match="reference_model 'no-such-model' is neither"):
        Metering(settings, Catalog(settings))


def test_unknown_country_is_a_config_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path, country="Atlantis")
    with pytest.raises(ConfigError, match="unknown country code 'Atlantis'"):
        Metering(settings, Catalog(settings))


def test_a_priced_hosted_reference_is_accepted(tmp_path: Path) -> None:
    settings = _settings(tmp_path, reference_model="gpt-4o")
    assert Metering(settings, Catalog(settings)).pricer is not None


def test_profiling_a_model_that_is_not_installed_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    constants = EstimateConstants(watts_per_thread=4.0, ram_w=10.0, source="test")
    with pytest.raises(UnknownModelError, match="is not an installed local model"):
        profile_model(settings, "smollm2-135m-instruct", Accountant(), constants)


def test_profiling_a_remote_model_needs_its_servers_process(tmp_path: Path) -> None:
    from smallfirst.settings import UserModel

    remote = UserModel(name="far", base_url="http://127.0.0.1:9/v1", model_id="x")
    settings = _settings(tmp_path, models=(remote,))
    constants = EstimateConstants(watts_per_thread=4.0, ram_w=10.0, source="test")
    # refused before any request: the gateway cannot meter a server it cannot see
    with pytest.raises(ConfigError, match=r"far is a remote model: .* with --pid"):
        profile_model(settings, "far", Accountant(), constants)


def test_a_local_model_is_not_profiled_by_another_process(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    constants = EstimateConstants(watts_per_thread=4.0, ram_w=10.0, source="test")
    with pytest.raises(ConfigError, match="--pid is for a remote model's server"):
        profile_model(settings, "smollm2-135m-instruct", Accountant(), constants, pid=1)
