"""The year simulator on traces whose best hours are known, and `smallfirst batch simulate`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from smallfirst.cli import main
from smallfirst.errors import ConfigError
from smallfirst.scheduling.hourly import HOUR
from smallfirst.scheduling.simulate import Assumptions, simulate

pytestmark = pytest.mark.fast

T0 = datetime(2022, 1, 1, tzinfo=UTC)
A = Assumptions(lines_per_batch=100, energy_wh_per_line=0.1, work_s_per_line=18.0, margin_s=0)


def daily(clean_hour: int, clean: float = 100.0, dirty: float = 400.0) -> dict[datetime, float]:
    return {T0 + i * HOUR: clean if i % 24 == clean_hour else dirty for i in range(8760)}


def test_a_daily_clean_hour_is_found_by_every_forecast() -> None:
    sim = simulate(daily(3), days=30, batches_per_day=4, assumptions=A, seed=1)
    # half an hour of work, 10 Wh: at 400 g/kWh at once, at 100 g/kWh in the clean hour
    assert sim.submitted == 120 and sim.skipped == 0
    assert sim.at_submission_mean_g == pytest.approx(4.0, abs=0.5)
    assert sim.oracle.mean_g == pytest.approx(3.0, abs=0.5)
    for name in ("perfect", "persistence", "profile"):  # a daily pattern: the past is exact
        assert sim.by_forecast[name].of_oracle == pytest.approx(1.0, abs=0.02)
    assert sim.by_forecast["noisy20"].of_oracle <= 1.0 + 1e-9
    assert len(sim.saved_g["persistence"]) == 120


def test_a_flat_trace_saves_nothing() -> None:
    flat = {T0 + i * HOUR: 250.0 for i in range(8760)}
    sim = simulate(flat, days=5, batches_per_day=2, assumptions=A, seed=0)
    assert sim.oracle.mean_g == pytest.approx(0.0)
    assert all(s.mean_g == pytest.approx(0.0, abs=1e-9) for s in sim.by_forecast.values())


def test_the_fleet_view_scales_the_saving_per_line() -> None:
    sim = simulate(daily(5), days=10, batches_per_day=2, assumptions=A, seed=2)
    small, large = sim.fleet("perfect")
    per_line = sim.by_forecast["perfect"].mean_g / A.lines_per_batch
    assert small["saved_kg_per_day"] == pytest.approx(1e6 * per_line / 1e3)
    assert large["saved_t_per_year"] == pytest.approx(1e9 * per_line * 365 / 1e6)
    assert small["energy_mwh_per_day"] == pytest.approx(1e6 * 0.1 / 1e6)


def test_a_trace_without_hours_is_refused() -> None:
    with pytest.raises(ConfigError, match="no submission"):
        simulate({T0: 1.0}, days=1, batches_per_day=2, assumptions=A)


def test_the_command_reports_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "sim.png"
    args = ["batch", "simulate", "--data-dir", str(tmp_path), "--days", "5"]
    assert main([*args, "--batches-per-day", "4", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "file:embedded: 20 batches" in out
    assert "profile" in out and "1e+09 lines/day" in out
    assert "qwen2.5-coder-0.5b-instruct's profile" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([*args, "--json", "--energy-wh-per-line", "0.5", "--window", "12h"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["assumptions"]["energy_wh_per_line"] == 0.5
    assert data["assumptions"]["window_h"] == 12
    assert set(data["by_forecast"]) == {"perfect", "profile", "persistence", "noisy10", "noisy20"}


def test_the_command_refuses_what_it_cannot_replay(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="replays a trace"):
        main(["batch", "simulate", "--data-dir", str(tmp_path), "--signal", "constant:5"])
    with pytest.raises(SystemExit):
        main(["batch", "simulate", "--data-dir", str(tmp_path), "--window", "200h"])
