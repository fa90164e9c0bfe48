"""A batch survives ``kill -9`` of its gateway: restarted on the same data directory, the
runner resumes, and every line is in the output exactly once, each with its own stored
receipt; lines finished before the kill are not run again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from smallfirst.settings import Settings
from tests.conftest import SMOL, free_port, wait_until_up

LINES = 24
LEASE_S = 3.0


def start(settings: Settings, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(
        os.environ,
        SMALLFIRST_DATA_DIR=str(data_dir),
        SMALLFIRST_MODELS_DIR=str(settings.models_path),
        SMALLFIRST_DEFAULT_ROUTER="false",
        SMALLFIRST_RESPONSE_CACHE="false",
        SMALLFIRST_N_CTX="2048",
        SMALLFIRST_BATCH_TICK_S="0.05",
        SMALLFIRST_BATCH_LINE_LEASE_S=str(LEASE_S),
    )
    log = (data_dir / "serve.log").open("a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "smallfirst.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/health", proc)
    return proc, url


@pytest.fixture()
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def finished_lines(data_dir: Path) -> dict[str, str]:
    """custom_id -> receipt id of the lines the store says are done."""
    with sqlite3.connect(data_dir / "smallfirst.db") as db:
        rows = db.execute(
            "SELECT custom_id, receipt_id FROM batch_lines WHERE status = 'done'"
        ).fetchall()
    return {str(c): str(r) for c, r in rows}


def test_kill_9_mid_batch_then_restart_answers_every_line_once(
    settings: Settings, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    proc, url = start(settings, tmp_path)
    procs.append(proc)
    oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    items = [
        {
            "custom_id": f"line-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": SMOL,
                "messages": [{"role": "user", "content": f"Write a word about {i}."}],
                "max_tokens": 12,
            },
        }
        for i in range(LINES)
    ]
    content = ("\n".join(json.dumps(i) for i in items) + "\n").encode()
    file_id = oai.files.create(file=("in.jsonl", content), purpose="batch").id
    batch = oai.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 120
    while True:  # kill it with some lines done and others not
        counts = oai.batches.retrieve(batch.id).request_counts
        assert counts is not None
        if counts.completed >= 3:
            break
        assert time.monotonic() < deadline, "no line finished"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = finished_lines(tmp_path)
    assert 0 < len(before) < LINES, "the kill came too late to test a resume"

    proc, url = start(settings, tmp_path)
    procs.append(proc)
    oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    deadline = time.monotonic() + 180
    while (done := oai.batches.retrieve(batch.id)).status != "completed":
        assert done.status in ("in_progress", "finalizing"), done.status
        assert time.monotonic() < deadline, "the batch did not resume"
        time.sleep(0.1)
    assert done.request_counts is not None and done.request_counts.completed == LINES
    assert done.output_file_id is not None and done.error_file_id is None
    out = [json.loads(x) for x in oai.files.content(done.output_file_id).text.splitlines()]
    ids = [o["custom_id"] for o in out]
    assert sorted(ids) == sorted(i["custom_id"] for i in items)  # every line, exactly once
    receipts = {o["custom_id"]: o["response"]["body"]["smallfirst"]["receipt_id"] for o in out}
    assert len(set(receipts.values())) == LINES  # one receipt per line
    for custom_id, receipt_id in receipts.items():
        stored = httpx_get(url + f"/smallfirst/v1/receipts/{receipt_id}")
        assert stored["receipt_id"] == receipt_id, custom_id
    # the lines finished before the kill kept their answers: not run again
    for custom_id, receipt_id in before.items():
        assert receipts[custom_id] == receipt_id


def httpx_get(url: str) -> dict[str, object]:
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body
