"""Carbon-aware batches end to end: a trace whose clean hour is known, an injected clock.

The runner waits for the clean hour, runs the batch in it, prices each line's receipt at
that hour's intensity, and shows gCO2 as run against at submission and the worst hour; a
batch whose deadline is too close runs at once and says so."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest

from smallfirst.settings import Settings
from tests.conftest import LiveServer
from tests.server.test_batches_api import chat_line, lines_of, upload, wait_for

BASE_G, CLEAN_G, DIRTY_G = 400.0, 50.0, 800.0


class Clock:
    def __init__(self) -> None:
        self.shift_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift_s


@pytest.fixture(scope="module")
def scheduled(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, Clock, datetime]]:
    data = tmp_path_factory.mktemp("scheduled")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    clean, dirty = now + timedelta(hours=3), now + timedelta(hours=6)
    rows = ["timestamp_utc,carbon_intensity_g_per_kwh"]
    for h in range(-2, 60):
        hour = now + timedelta(hours=h)
        value = CLEAN_G if hour == clean else DIRTY_G if hour == dirty else BASE_G
        rows.append(f"{hour:%Y-%m-%dT%H:%M:%SZ},{value}")
    trace = Path(data) / "trace.csv"
    trace.write_text("\n".join(rows) + "\n")
    own = settings.model_copy(
        update={
            "data_dir": data,
            "batch_tick_s": 0.05,
            "carbon_signal": f"file:{trace}",
            "signal_clock_offset": "none",
            "schedule_margin_s": 3600.0,
        }
    )
    clock = Clock()
    with LiveServer(own) as server:
        server.app.state.batch_runner.clock = clock
        yield server, clock, clean


def test_the_batch_waits_for_the_clean_hour_and_runs_in_it(
    scheduled: tuple[LiveServer, Clock, datetime],
) -> None:
    server, clock, clean = scheduled
    oai = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    items = [chat_line(f"c{i}", f"Name a colour {i}.") for i in range(3)]
    batch = oai.batches.create(
        input_file_id=upload(oai, items), endpoint="/v1/chat/completions", completion_window="24h"
    )
    waiting = wait_for(oai, batch.id, ("in_progress",))
    time.sleep(0.5)  # ten ticks: nothing may start before the clean hour
    waiting = oai.batches.retrieve(batch.id)
    assert waiting.request_counts is not None and waiting.request_counts.completed == 0
    plan = (waiting.model_extra or {})["smallfirst"]["plan"]
    assert plan["at_once"] is False, plan
    assert plan["hours"] == [f"{clean:%Y-%m-%dT%H:%M:%SZ}"]
    assert plan["submission_g_per_kwh"] == pytest.approx(BASE_G)
    assert plan["worst_g_per_kwh"] == pytest.approx(DIRTY_G)

    clock.shift_s = (clean - datetime.now(UTC)).total_seconds() + 60  # into the clean hour
    done = wait_for(oai, batch.id, ("completed",))
    out = lines_of(oai, done.output_file_id)
    assert len(out) == 3
    for line in out:
        carbon = line["response"]["body"]["smallfirst"]["carbon"]
        assert carbon["grid_g_per_kwh"] == CLEAN_G  # the hour it ran, not the annual average
        assert "file:" in carbon["source"]
        stored = server.app.state.store.get(line["response"]["body"]["smallfirst"]["receipt_id"])
        assert stored.grid_g_per_kwh == CLEAN_G
    view = (done.model_extra or {})["smallfirst"]
    assert view["hours_chosen"] == plan["hours"]
    assert view["co2_g_as_run"] is not None and view["lines_with_co2"] == 3
    assert view["co2_g_as_run"] < view["co2_g_at_submission"] < view["co2_g_worst_hours"]
    assert view["co2_g_at_submission"] == pytest.approx(view["co2_g_as_run"] * BASE_G / CLEAN_G)
    clock.shift_s = 0.0


def test_a_deadline_too_close_runs_at_once_and_says_so(
    scheduled: tuple[LiveServer, Clock, datetime],
) -> None:
    server, _, _ = scheduled
    oai = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    batch = oai.batches.create(
        input_file_id=upload(oai, [chat_line("now", "Hi")]),
        endpoint="/v1/chat/completions",
        completion_window="1h",  # less than the hour of margin
    )
    done = wait_for(oai, batch.id, ("completed",))
    plan = (done.model_extra or {})["smallfirst"]["plan"]
    assert plan["at_once"] is True
    assert "deadline too close" in plan["reason"]
