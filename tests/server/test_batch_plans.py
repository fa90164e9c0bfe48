"""A batch's plan once some of its lines have run: their measured pace replaces the guess."""

from __future__ import annotations

from typing import Any

import pytest

from smallfirst.server.batch_plans import MEASURED_AFTER_LINES, BusyTime, Planner
from smallfirst.settings import Settings
from smallfirst.store.batches import BatchRecord, Counts

pytestmark = pytest.mark.fast

NOW = 1_000_000.0


def test_overlapping_lines_count_their_wall_time_once() -> None:
    busy = BusyTime()
    busy.start("b", 0.0)
    busy.start("b", 1.0)
    busy.stop("b", 3.0, finished=True)
    busy.stop("b", 5.0, finished=True)
    assert busy.measured("b", 10.0) == (5.0, 2)
    busy.start("b", 20.0)  # in flight: its time so far counts
    busy.stop("b", 21.0, finished=False)  # deferred: time, not a finished line
    assert busy.measured("b", 30.0) == (6.0, 2)
    busy.start("b", 40.0)
    assert busy.measured("b", 42.0) == (8.0, 2)
    busy.forget("b")
    assert busy.measured("b", 50.0) == (0.0, 0)


def _batch(plan: dict[str, Any] | None = None) -> BatchRecord:
    return BatchRecord(
        id="batch_p", key_id=None, endpoint="/v1/chat/completions", input_file_id="file-x",
        completion_window="24h", status="in_progress", created_at=NOW, expires_at=NOW + 86400,
        stamps={}, output_file_id=None, error_file_id=None, errors=None, metadata=None,
        plan=plan or {"estimate": {"model": "m", "tokens_in": 10_000, "tokens_out": 10_000}},
    )  # fmt: skip


def _counts(completed: int, left: int, energy_j: float | None) -> Counts:
    return Counts(
        total=completed + left, completed=completed, failed=0, pending=left, running=0,
        co2_g=None, with_co2=0, energy_j=energy_j,
    )  # fmt: skip


def test_the_plan_uses_the_lines_measured_pace_once_enough_have_run() -> None:
    planner = Planner(Settings(), lambda _: None)
    counts = _counts(completed=4, left=6, energy_j=4 * 36.0)
    _, guessed = planner.plan(_batch(), counts, NOW, (8.0, MEASURED_AFTER_LINES - 1))
    assert guessed["estimate_basis"].startswith("assumed")
    _, measured = planner.plan(_batch(), counts, NOW, (8.0, 4))
    assert measured["estimate_basis"].startswith("measured")
    assert measured["work_s"] == pytest.approx(8.0 / 4 * 6)  # 2 s a line, 6 left
    assert measured["energy_wh"] == pytest.approx(36.0 / 3600 * 6)  # 36 J a line
    assert measured["work_s"] != guessed["work_s"]
    # without the receipts' energy the guess stands
    _, unknown = planner.plan(_batch(), _counts(4, 6, None), NOW, (8.0, 4))
    assert unknown["estimate_basis"].startswith("assumed")
