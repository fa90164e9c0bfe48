"""The runner's rules, on a real SQLite store with the serving step faked (a unit test of
its logic; tests/server/test_batches_api.py runs it for real): spare capacity only, lines
that cannot run now go back, a line whose bytes are gone fails once, expiry."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from smallfirst.server.batch_lines import Answered, Deferred
from smallfirst.server.batch_plans import Planner
from smallfirst.server.batch_runner import BatchRunner
from smallfirst.settings import Settings
from smallfirst.store.batches import BatchStore, LineRef
from smallfirst.store.files import FileStore
from smallfirst.store.keys import KeyStore
from smallfirst.store.sqlite_backend import SqliteBackend

pytestmark = [pytest.mark.fast, pytest.mark.asyncio]


class Pool:
    def __init__(self) -> None:
        self.live_waiting = 0

    def waiting(self) -> int:
        return self.live_waiting


class Lines:
    """Answers lines when told to; counts how many run at once."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.running = self.most = 0
        self.defer: set[str] = set()

    async def answer(self, endpoint: str, custom_id: str, body: Any, key: object) -> Answered:
        if custom_id in self.defer:
            self.defer.discard(custom_id)
            raise Deferred("overloaded")
        self.running += 1
        self.most = max(self.most, self.running)
        await self.gate.wait()
        self.running -= 1
        return Answered(True, {"custom_id": custom_id}, {"receipt_id": f"r-{custom_id}"})


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _runner(tmp_path: Path, n: int, **settings: Any) -> tuple[BatchRunner, Pool, Lines, str]:
    s = Settings(data_dir=tmp_path, batch_max_in_flight=2, **settings)
    db = SqliteBackend(tmp_path / "smallfirst.db")
    files, batches = FileStore(db, tmp_path), BatchStore(db)
    items = [json.dumps({"custom_id": f"c{i}", "body": {}}) for i in range(n)]
    content = ("\n".join(items) + "\n").encode()
    source = files.add(content, filename="in", purpose="batch", key_id=None, lines=n)
    refs, offset = [], 0
    for i, item in enumerate(items):
        refs.append(LineRef(i + 1, f"c{i}", offset, len(item)))
        offset += len(item) + 1
    clock = Clock()
    batches.create(
        {"id": "batch_t", "key_id": None, "endpoint": "/v1/chat/completions",
         "input_file_id": source.id, "completion_window": "1h", "status": "validating",
         "created_at": clock.now, "expires_at": clock.now + 3600},
        refs,
    )  # fmt: skip
    pool, lines = Pool(), Lines()
    runner = BatchRunner(
        s, batches, files, KeyStore(db, tmp_path), pool, lines,  # type: ignore[arg-type]
        Planner(s, lambda _: None), clock=clock,
    )  # fmt: skip
    return runner, pool, lines, source.id


async def _settle(runner: BatchRunner, lines: Lines) -> None:
    """Until every line task has ended or waits at the gate (their store and file work runs
    in worker threads)."""
    for _ in range(500):
        if len(runner._running) == lines.running:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the runner's tasks did not settle")


async def _until_done(runner: BatchRunner, lines: Lines) -> str:
    for _ in range(20):
        await runner.step()
        await _settle(runner, lines)
        status = runner.batches.get("batch_t", None).status
        if status not in ("validating", "in_progress"):
            return status
    raise AssertionError("the batch did not finish")


async def test_spare_capacity_only(tmp_path: Path) -> None:
    runner, pool, lines, _ = _runner(tmp_path, 5)
    pool.live_waiting = 1
    await runner.step()  # validating -> in_progress, but a live request waits: nothing starts
    await _settle(runner, lines)
    assert lines.running == 0 and not runner._running
    pool.live_waiting = 0
    await runner.step()
    await runner.step()  # at most batch_max_in_flight lines at once
    await _settle(runner, lines)
    assert lines.running == 2
    lines.gate.set()
    assert await _until_done(runner, lines) == "completed"
    assert lines.most == 2
    batch = runner.batches.get("batch_t", None)
    assert batch.output_file_id is not None
    assert len(runner.files.read(batch.output_file_id, None).splitlines()) == 5


async def test_a_deferred_line_goes_back_and_runs_later(tmp_path: Path) -> None:
    runner, _, lines, _ = _runner(tmp_path, 2)
    lines.defer.add("c0")
    lines.gate.set()
    await runner.step()
    await _settle(runner, lines)
    assert runner.batches.counts("batch_t").completed == 1  # c1; c0 went back to pending
    runner.clock.now += 2  # type: ignore[attr-defined]  # past the pause
    assert await _until_done(runner, lines) == "completed"
    assert {r["custom_id"]: r["attempts"] for r in runner.batches.lines("batch_t")} == {
        "c0": 1,
        "c1": 1,
    }


async def test_a_line_whose_bytes_are_gone_fails_once(tmp_path: Path) -> None:
    runner, _, lines, file_id = _runner(tmp_path, 1)
    runner.files.path(file_id).unlink()
    lines.gate.set()
    assert await _until_done(runner, lines) == "completed"
    batch = runner.batches.get("batch_t", None)
    assert batch.error_file_id is not None
    (line,) = runner.batches.outputs("batch_t", ok=False)
    assert json.loads(line)["error"]["code"] == "server_error"


async def test_past_the_window_unstarted_lines_expire(tmp_path: Path) -> None:
    runner, pool, _, _ = _runner(tmp_path, 3)
    pool.live_waiting = 1  # nothing runs
    await runner.step()
    runner.clock.now += 3601  # type: ignore[attr-defined]
    await runner.step()
    batch = runner.batches.get("batch_t", None)
    assert batch.status == "expired" and batch.stamps["expired_at"] == runner.clock()
    assert batch.output_file_id is None and batch.error_file_id is not None
    codes = {json.loads(x)["error"]["code"] for x in runner.batches.outputs("batch_t", ok=False)}
    assert codes == {"batch_expired"}
