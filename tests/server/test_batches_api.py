"""The Files and Batch API with the real openai client against a live gateway serving
SmolLM2-135M: upload, create, poll to completed, download; the error file; cancel; list
and pagination; uploads refused line by line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from smallfirst.settings import Settings
from tests.conftest import SMOL, LiveServer

POLL_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def batch_gateway(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    own = settings.model_copy(
        update={"data_dir": tmp_path_factory.mktemp("batches"), "batch_tick_s": 0.05}
    )
    with LiveServer(own) as server:
        yield server


@pytest.fixture(scope="module")
def oai(batch_gateway: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=batch_gateway.url + "/v1", api_key="unused", max_retries=0)


def chat_line(custom_id: str, content: str, model: str = SMOL, **extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 8}
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {**body, **extra},
    }


def jsonl(items: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(i) for i in items) + "\n").encode()


def upload(oai: openai.OpenAI, items: list[dict[str, Any]]) -> str:
    return oai.files.create(file=("in.jsonl", jsonl(items)), purpose="batch").id


def wait_for(oai: openai.OpenAI, batch_id: str, statuses: tuple[str, ...]) -> Any:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        batch = oai.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch stuck in {batch.status}"
        time.sleep(0.1)


def lines_of(oai: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(line) for line in oai.files.content(file_id).text.splitlines()]


def test_a_batch_runs_to_completed_with_real_answers(
    oai: openai.OpenAI, batch_gateway: LiveServer
) -> None:
    prompts = {f"q{i}": f"Say the number {i}." for i in range(4)}
    file_id = upload(oai, [chat_line(cid, text) for cid, text in prompts.items()])
    batch = oai.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h",
        metadata={"job": "nightly"},
    )  # fmt: skip
    assert batch.status == "validating" and batch.metadata == {"job": "nightly"}
    done = wait_for(oai, batch.id, ("completed", "failed"))
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (4, 4)
    assert done.request_counts.failed == 0 and done.error_file_id is None
    assert done.completed_at is not None and done.in_progress_at is not None
    out = lines_of(oai, done.output_file_id)
    assert sorted(o["custom_id"] for o in out) == sorted(prompts)
    store = batch_gateway.app.state.store
    for o in out:
        assert o["error"] is None and o["response"]["status_code"] == 200
        body = o["response"]["body"]
        assert body["object"] == "chat.completion" and body["model"] == SMOL
        assert body["choices"][0]["message"]["content"].strip()  # a real answer
        # the line's receipt is stored, as a live request's is
        receipt_id = body["smallfirst"]["receipt_id"]
        assert store.get(receipt_id).id == receipt_id
    extra = done.model_extra or {}
    assert extra["smallfirst"]["plan"]["at_once"] is True
    output_file = oai.files.retrieve(done.output_file_id)
    assert output_file.purpose == "batch_output"
    assert done.usage is not None  # the lines' own usage, summed
    usages = [o["response"]["body"]["usage"] for o in out]
    assert done.usage.input_tokens == sum(u["prompt_tokens"] for u in usages) > 0
    assert done.usage.output_tokens == sum(u["completion_tokens"] for u in usages) > 0
    assert done.usage.total_tokens == sum(u["total_tokens"] for u in usages)
    assert done.usage.input_tokens_details.cached_tokens == sum(
        (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0 for u in usages
    )
    assert done.usage.output_tokens_details.reasoning_tokens == 0


def test_bad_lines_go_to_the_error_file(oai: openai.OpenAI) -> None:
    items = [
        chat_line("good", "Hello"),
        chat_line("unknown-model", "Hello", model="no-such-model"),
        chat_line("bad-body", "Hello", temperature=9),
    ]
    batch = oai.batches.create(
        input_file_id=upload(oai, items), endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = wait_for(oai, batch.id, ("completed", "failed"))
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 2)
    (good,) = lines_of(oai, done.output_file_id)
    assert good["custom_id"] == "good"
    # the refused lines used no tokens: the batch's usage is the good line's
    assert done.usage is not None
    assert done.usage.input_tokens == good["response"]["body"]["usage"]["prompt_tokens"]
    assert done.usage.output_tokens == good["response"]["body"]["usage"]["completion_tokens"]
    errors = {o["custom_id"]: o["response"] for o in lines_of(oai, done.error_file_id)}
    assert errors["unknown-model"]["status_code"] == 404
    assert errors["unknown-model"]["body"]["error"]["code"] == "model_not_found"
    assert errors["bad-body"]["status_code"] == 400
    assert errors["bad-body"]["body"]["error"]["param"] == "temperature"


def test_a_file_naming_another_endpoint_fails_the_batch(oai: openai.OpenAI) -> None:
    item = chat_line("c", "Hi")
    batch = oai.batches.create(
        input_file_id=upload(oai, [item]), endpoint="/v1/completions", completion_window="24h"
    )
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.errors is not None and batch.errors.data
    assert batch.errors.data[0].line == 1 and batch.errors.data[0].code == "mismatched_url"


def test_cancel_keeps_the_finished_lines(oai: openai.OpenAI) -> None:
    items = [chat_line(f"c{i}", f"Count to {i}.", max_tokens=16) for i in range(40)]
    batch = oai.batches.create(
        input_file_id=upload(oai, items), endpoint="/v1/chat/completions", completion_window="24h"
    )
    time.sleep(0.5)  # some lines finish
    cancelling = oai.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = wait_for(oai, batch.id, ("cancelled",))
    assert done.cancelled_at is not None and done.cancelling_at is not None
    assert done.request_counts is not None and done.request_counts.completed < 40
    finished = lines_of(oai, done.output_file_id) if done.output_file_id else []
    assert len(finished) == done.request_counts.completed
    assert len({o["custom_id"] for o in finished}) == len(finished)
    with pytest.raises(openai.BadRequestError):
        oai.batches.cancel(wait_for(oai, _completed_batch(oai), ("completed",)).id)


def _completed_batch(oai: openai.OpenAI) -> str:
    batch = oai.batches.create(
        input_file_id=upload(oai, [chat_line("one", "Hi")]),
        endpoint="/v1/chat/completions",
        completion_window="2h",  # our extension: any <N>h up to 168
    )
    return batch.id


def test_batches_list_in_pages(oai: openai.OpenAI) -> None:
    made = [_completed_batch(oai) for _ in range(3)]
    first = oai.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2]
    assert first.has_more
    second = oai.batches.list(limit=2, after=first.data[-1].id)
    assert second.data[0].id == made[0]
    for batch_id in made:
        wait_for(oai, batch_id, ("completed",))


def test_files_list_retrieve_delete(oai: openai.OpenAI) -> None:
    file_id = upload(oai, [chat_line("x", "Hi")])
    got = oai.files.retrieve(file_id)
    assert (got.purpose, got.filename, got.status) == ("batch", "in.jsonl", "processed")
    assert got.bytes == len(jsonl([chat_line("x", "Hi")]))
    assert file_id in [f.id for f in oai.files.list(purpose="batch")]
    assert oai.files.delete(file_id).deleted
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(file_id)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (jsonl([chat_line("a", "x")]) + b"not json\n", "Line 2 of the file: not valid JSON"),
        (jsonl([chat_line("a", "x"), chat_line("a", "y")]), "Line 2 of the file: custom_id 'a'"),
        (jsonl([{**chat_line("a", "x"), "method": "GET"}]), "Line 1 of the file: 'method'"),
        (jsonl([{**chat_line("a", "x"), "url": "/v1/images"}]), "Line 1 of the file: 'url'"),
        (b"\n\n", "no requests"),
    ],
)
def test_uploads_are_checked_line_by_line(oai: openai.OpenAI, content: bytes, says: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.files.create(file=("in.jsonl", content), purpose="batch")
    assert says in str(caught.value)


def test_bad_batch_requests_are_400s(oai: openai.OpenAI) -> None:
    file_id = upload(oai, [chat_line("x", "Hi")])
    for window in ("169h", "0h", "1d"):
        with pytest.raises(openai.BadRequestError, match="completion_window"):
            oai.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions",
                completion_window=window,  # type: ignore[arg-type]
            )  # fmt: skip
    with pytest.raises(openai.NotFoundError):
        oai.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_nope")


def test_an_upload_over_the_limit_is_refused(settings: Settings, tmp_path: Path) -> None:
    small = settings.model_copy(update={"data_dir": tmp_path, "files_max_bytes": 2048})
    with LiveServer(small) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        big = jsonl([chat_line(f"c{i}", "x" * 100) for i in range(40)])
        with pytest.raises(openai.APIStatusError) as caught:
            client.files.create(file=("in.jsonl", big), purpose="batch")
        assert caught.value.status_code in (400, 413)


def test_files_and_batches_belong_to_their_key(settings: Settings, tmp_path: Path) -> None:
    from smallfirst.store.keys import KeySpec

    own = settings.model_copy(update={"data_dir": tmp_path, "batch_tick_s": 0.05})
    with LiveServer(own) as server:
        keys = server.app.state.keys
        alice, a_secret = keys.create(KeySpec("alice", budget_wh=100.0))
        _, b_secret = keys.create(KeySpec("bob"))
        a = openai.OpenAI(base_url=server.url + "/v1", api_key=a_secret, max_retries=0)
        b = openai.OpenAI(base_url=server.url + "/v1", api_key=b_secret, max_retries=0)
        file_id = upload(a, [chat_line("x", "Hi")])
        with pytest.raises(openai.NotFoundError):
            b.files.retrieve(file_id)  # someone else's file is missing, not forbidden
        with pytest.raises(openai.NotFoundError):
            b.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        batch = a.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert b.batches.list().data == []
        done = wait_for(a, batch.id, ("completed",))
        (line,) = lines_of(a, done.output_file_id)
        receipt = server.app.state.store.get(line["response"]["body"]["smallfirst"]["receipt_id"])
        assert receipt.key_id == alice.id  # the line was served as the key's own request
        billed = keys.get(alice.id)  # its budget settled as a live request's: nothing held
        assert billed.reserved.wh == 0.0 and billed.spent.wh == pytest.approx(
            (receipt.energy_j or 0.0) / 3600.0
        )
        with pytest.raises(openai.NotFoundError):
            b.files.content(done.output_file_id)
        _, admin_secret = keys.create(KeySpec("ops", admin=True))
        admin = openai.OpenAI(base_url=server.url + "/v1", api_key=admin_secret, max_retries=0)
        assert [x.id for x in admin.batches.list().data] == [batch.id]  # admins see all
        assert admin.files.retrieve(file_id).id == file_id


def test_live_requests_keep_their_first_token_while_a_batch_runs(
    oai: openai.OpenAI, batch_gateway: LiveServer
) -> None:
    """Interactive first: the runner leaves one of the engine's slots free and starts no line
    while a live request waits, so a live request's first token is not held behind the batch.
    The bound is generous (a shared CPU); bench/ is where the figure belongs."""

    def ttft() -> float:
        start = time.perf_counter()
        stream = oai.chat.completions.create(
            model=SMOL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
        )
        first = None
        for _ in stream:
            first = first or time.perf_counter()
        assert first is not None
        return first - start

    alone = sorted(ttft() for _ in range(3))[1]
    items = [chat_line(f"b{i}", f"Tell a story about {i}.", max_tokens=48) for i in range(60)]
    batch = oai.batches.create(
        input_file_id=upload(oai, items), endpoint="/v1/chat/completions", completion_window="24h"
    )
    wait_for(oai, batch.id, ("in_progress",))
    time.sleep(0.3)
    busy = sorted(ttft() for _ in range(3))[1]
    assert oai.batches.retrieve(batch.id).status == "in_progress"  # measured while it ran
    oai.batches.cancel(batch.id)
    wait_for(oai, batch.id, ("cancelled",))
    assert busy < alone * 4 + 0.5, (alone, busy)


def test_an_embeddings_batch(oai: openai.OpenAI) -> None:
    items = [
        {"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
         "body": {"model": SMOL, "input": f"text number {i}"}}
        for i in range(2)
    ]  # fmt: skip
    batch = oai.batches.create(
        input_file_id=upload(oai, items), endpoint="/v1/embeddings", completion_window="24h"
    )
    done = wait_for(oai, batch.id, ("completed", "failed"))
    assert done.status == "completed"
    prompt_tokens = 0
    for line in lines_of(oai, done.output_file_id):
        body = line["response"]["body"]
        assert body["object"] == "list" and len(body["data"][0]["embedding"]) > 100
        assert body["smallfirst"]["receipt_id"]
        prompt_tokens += body["usage"]["prompt_tokens"]
    assert done.usage is not None  # embeddings read tokens and generate none
    assert (done.usage.input_tokens, done.usage.output_tokens) == (prompt_tokens, 0)
    assert prompt_tokens > 0


def test_a_text_completions_batch(oai: openai.OpenAI) -> None:
    item = {"custom_id": "t", "method": "POST", "url": "/v1/completions",
            "body": {"model": SMOL, "prompt": "The sky is", "max_tokens": 4}}  # fmt: skip
    batch = oai.batches.create(
        input_file_id=upload(oai, [item]), endpoint="/v1/completions", completion_window="24h"
    )
    done = wait_for(oai, batch.id, ("completed", "failed"))
    (line,) = lines_of(oai, done.output_file_id)
    assert line["response"]["body"]["object"] == "text_completion"
    assert line["response"]["body"]["choices"][0]["text"]
