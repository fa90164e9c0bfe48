"""The forecast APIs' signals against a loopback stub speaking each documented format."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from smallfirst.errors import ConfigError, SignalError
from smallfirst.scheduling import providers
from smallfirst.scheduling.forecasts import ForecastSignal
from smallfirst.scheduling.hourly import HOUR
from smallfirst.scheduling.planner import plan
from smallfirst.scheduling.signal import open_signal
from smallfirst.settings import Settings
from smallfirst.testing import ThreadedServer

from .forecast_stubs import PASSWORD, TOKEN, USER, Stub, build

pytestmark = pytest.mark.fast

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
VALUES: list[float | None] = [300.0, 250.0, None, 90.0, 310.0, 320.0]


@pytest.fixture(scope="module")
def stub() -> Iterator[tuple[Stub, str]]:
    state = Stub(START, VALUES)
    with ThreadedServer(build(state), what="forecast stub") as server:
        yield state, f"http://127.0.0.1:{server.port}"


@pytest.fixture
def settings(stub: tuple[Stub, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    state, url = stub
    state.calls.clear()
    state.delay_s, state.nonsense = 0.0, False
    monkeypatch.setenv("SF_TEST_EM", TOKEN)
    monkeypatch.setenv("SF_TEST_WT_USER", USER)
    monkeypatch.setenv("SF_TEST_WT_PASS", PASSWORD)
    return Settings(
        data_dir=tmp_path,
        electricitymaps_url=url,
        electricitymaps_token_env="SF_TEST_EM",
        watttime_url=url,
        watttime_username_env="SF_TEST_WT_USER",
        watttime_password_env="SF_TEST_WT_PASS",
        uk_carbon_intensity_url=url,
        signal_timeout_s=2.0,
    )


def expected() -> list[tuple[datetime, float]]:
    return [(START + i * HOUR, v) for i, v in enumerate(VALUES) if v is not None]


@pytest.mark.parametrize(
    "spec", ["electricitymaps:US-CAL-CISO", "watttime:CAISO_NORTH", "uk", "uk:13"]
)
def test_each_api_gives_hourly_grams_with_gaps_kept(settings: Settings, spec: str) -> None:
    signal = open_signal(spec, settings)
    got = signal.hours(START, START + 6 * HOUR)
    assert [h.start_utc for h in got] == [t for t, _ in expected()]
    assert [h.value for h in got] == pytest.approx([v for _, v in expected()])
    assert signal.unit == "gCO2e/kWh"


def test_watttime_says_it_is_marginal(settings: Settings) -> None:
    assert "moer" in open_signal("watttime:CAISO_NORTH", settings).name


def test_the_planner_picks_the_clean_hour_the_api_forecasts(settings: Settings) -> None:
    signal = open_signal("electricitymaps:US-CAL-CISO", settings)
    p = plan(START, START + 6 * HOUR, 1800, 10.0, signal, margin_s=0)
    assert p.hours == (START + 3 * HOUR,)


def test_the_last_forecast_is_reused_until_it_is_old(
    stub: tuple[Stub, str], settings: Settings
) -> None:
    state, url = stub
    clock = [0.0]
    signal = ForecastSignal(
        "uk",
        url,
        lambda client, now: providers.uk_carbon_intensity(client, now, None),
        timeout_s=2.0,
        cache_s=60.0,
        clock=lambda: clock[0],
    )
    signal.hours(START, START + HOUR)
    clock[0] = 59.0
    signal.hours(START, START + 2 * HOUR)
    assert state.calls["uk"] == 1
    clock[0] = 61.0
    signal.hours(START, START + HOUR)
    assert state.calls["uk"] == 2


def test_a_slow_api_is_a_clear_timeout(stub: tuple[Stub, str], settings: Settings) -> None:
    state, _ = stub
    state.delay_s = 1.0
    slow = open_signal("uk", settings.model_copy(update={"signal_timeout_s": 0.2}))
    with pytest.raises(SignalError, match=r"did not answer within 0\.2 s"):
        slow.hours(START, START + HOUR)


def test_nonsense_and_refusals_are_signal_errors(
    stub: tuple[Stub, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, _ = stub
    state.nonsense = True
    with pytest.raises(SignalError, match="not JSON"):
        open_signal("electricitymaps:DE", settings).hours(START, START + HOUR)
    state.nonsense = False
    monkeypatch.setenv("SF_TEST_EM", "wrong")
    with pytest.raises(SignalError, match="answered 401"):
        open_signal("electricitymaps:DE", settings).hours(START, START + HOUR)
    monkeypatch.setenv("SF_TEST_WT_PASS", "wrong")
    with pytest.raises(SignalError, match="answered 403"):
        open_signal("watttime:CAISO_NORTH", settings).hours(START, START + HOUR)


def test_an_unreachable_api_is_a_signal_error(tmp_path: Path) -> None:
    from smallfirst.testing import free_port

    s = Settings(data_dir=tmp_path, uk_carbon_intensity_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SignalError, match="signal uk"):
        open_signal("uk", s).hours(START, START + HOUR)


def test_missing_keys_and_zones_are_config_errors(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SF_TEST_EM")
    with pytest.raises(ConfigError, match="SF_TEST_EM"):
        open_signal("electricitymaps:DE", settings)
    with pytest.raises(ConfigError, match="give a zone"):
        open_signal("electricitymaps", settings)
    with pytest.raises(ConfigError, match="unknown signal"):
        open_signal("carbonfairy:XX", settings)
    with pytest.raises(ConfigError, match="price signal"):
        open_signal("uk", settings, unit="USD/kWh")
