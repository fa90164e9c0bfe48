"""Expiring files with the real openai client against a live gateway on a clock the test
moves: an upload's ``expires_after``, a batch's ``output_expires_after``, the sweep, and
the input of an unfinished batch kept until it ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.file_create_params import ExpiresAfter

from smallfirst.settings import Settings
from tests.conftest import LiveServer
from tests.server.test_batches_api import chat_line, jsonl, lines_of, upload, wait_for

HOUR: ExpiresAfter = {"anchor": "created_at", "seconds": 3600}


class Clock:
    def __init__(self) -> None:
        self.shift_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift_s


@pytest.fixture
def expiring(
    settings: Settings, tmp_path: Path
) -> Iterator[tuple[openai.OpenAI, Clock, LiveServer]]:
    own = settings.model_copy(update={"data_dir": tmp_path, "batch_tick_s": 0.05})
    clock = Clock()
    with LiveServer(own) as server:
        runner = server.app.state.batch_runner
        runner.clock = clock
        runner.files.clock = clock  # the routes' FileStore: one clock for expiry and sweep
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        yield client, clock, server


def on_disk(server: LiveServer, file_id: str) -> bool:
    return bool((server.settings.data_dir / "files" / file_id).exists())


def swept(server: LiveServer, file_id: str) -> bool:
    deadline = time.monotonic() + 10.0
    while on_disk(server, file_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_an_upload_expires_after_its_seconds(
    expiring: tuple[openai.OpenAI, Clock, LiveServer],
) -> None:
    oai, clock, server = expiring
    made = oai.files.create(
        file=("in.jsonl", jsonl([chat_line("x", "Hi")])), purpose="batch", expires_after=HOUR
    )
    forever = upload(oai, [chat_line("y", "Hi")])
    assert made.expires_at == made.created_at + 3600
    assert oai.files.retrieve(forever).expires_at is None  # none asked: never expires
    clock.shift_s = 3601.0
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        oai.files.content(made.id)
    with pytest.raises(openai.NotFoundError):
        oai.files.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        oai.batches.create(
            input_file_id=made.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert [f.id for f in oai.files.list()] == [forever]
    assert swept(server, made.id)  # the runner's tick removed its bytes
    assert on_disk(server, forever)


@pytest.mark.parametrize(
    ("expires_after", "param"),
    [
        ({"anchor": "created_at", "seconds": 3599}, "expires_after.seconds"),
        ({"anchor": "created_at", "seconds": 2_592_001}, "expires_after.seconds"),
        ({"anchor": "last_active_at", "seconds": 3600}, "expires_after.anchor"),
        ({"seconds": 3600}, "expires_after.anchor"),
    ],
)
def test_bad_lifetimes_are_400s_naming_the_parameter(
    expiring: tuple[openai.OpenAI, Clock, LiveServer], expires_after: Any, param: str
) -> None:
    oai, _, _ = expiring
    content = jsonl([chat_line("x", "Hi")])
    with pytest.raises(openai.BadRequestError) as caught:
        oai.files.create(file=("in.jsonl", content), purpose="batch", expires_after=expires_after)
    assert caught.value.param == param and caught.value.type == "invalid_request_error"
    batch_param = "output_" + param
    with pytest.raises(openai.BadRequestError) as caught:
        oai.batches.create(
            input_file_id=upload(oai, [chat_line("x", "Hi")]),
            endpoint="/v1/chat/completions",
            completion_window="24h",
            output_expires_after=expires_after,
        )
    assert caught.value.param == batch_param and caught.value.type == "invalid_request_error"
    assert len(oai.files.list().data) == 1  # the refused upload stored nothing


def test_a_batchs_output_files_expire_and_its_running_input_is_kept(
    expiring: tuple[openai.OpenAI, Clock, LiveServer],
) -> None:
    oai, clock, server = expiring
    items = [chat_line(f"c{i}", f"Count to {i}.", max_tokens=12) for i in range(12)]
    items.append(chat_line("bad", "Hi", model="no-such-model"))
    made = oai.files.create(file=("in.jsonl", jsonl(items)), purpose="batch", expires_after=HOUR)
    batch = oai.batches.create(
        input_file_id=made.id, endpoint="/v1/chat/completions", completion_window="24h",
        output_expires_after={"anchor": "created_at", "seconds": 7200},
    )  # fmt: skip
    clock.shift_s = 3601.0  # the input expires while its batch runs
    assert oai.batches.retrieve(batch.id).status in ("validating", "in_progress")
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(made.id)  # gone to callers at once ...
    done = wait_for(oai, batch.id, ("completed", "failed", "expired"))
    assert done.status == "completed"  # ... but its lines were all read and answered
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (12, 1)
    assert len(lines_of(oai, done.output_file_id)) == 12
    assert swept(server, made.id)  # once the batch ended
    output = oai.files.retrieve(done.output_file_id)
    errors = oai.files.retrieve(done.error_file_id)
    for out in (output, errors):  # anchored at each output file's own creation
        assert out.expires_at == out.created_at + 7200
    clock.shift_s += 7201.0
    for out in (output, errors):
        with pytest.raises(openai.NotFoundError):
            oai.files.content(out.id)
        assert swept(server, out.id)
    assert oai.batches.retrieve(batch.id).output_file_id == output.id  # the batch stays
