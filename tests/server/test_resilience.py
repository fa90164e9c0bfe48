"""Retries, fallbacks and cooldown through the real gateway, against scripted loopback stubs.

Every upstream here is a :class:`~smallfirst.stub_upstream.StubUpstream` (or a closed port), so no
model is loaded; the client is the real ``openai`` one with its own retries off.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from smallfirst import errors as e
from smallfirst.server.fallbacks import falls_back
from smallfirst.settings import Settings, UserModel
from smallfirst.stub_upstream import StubUpstream
from tests.conftest import LiveServer, free_port

# not in the fast lane: these wait on purpose (backoff, Retry-After, cooldowns), ~8 s in all


def remote(name: str, url: str, fallbacks: Sequence[str] = ()) -> UserModel:
    return UserModel(name=name, base_url=url, model_id="stub", fallbacks=tuple(fallbacks))


@contextmanager
def gateway(tmp_path: Path, *models: UserModel, **knobs: Any) -> Iterator[LiveServer]:
    settings = Settings(
        data_dir=tmp_path,
        models=models,
        default_model=models[0].name,
        default_router=False,
        remote_retry_backoff_s=0.05,
        **knobs,
    )
    with LiveServer(settings) as server:
        yield server


def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def ask(server: LiveServer, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)


def attempts(receipt: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(a["model"], a["error"] and a["error"]["code"]) for a in receipt["route"]["attempts"]]


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there


# --- retries ------------------------------------------------------------------------------


def test_a_429_with_retry_after_is_waited_out_and_the_200_answers(tmp_path: Path) -> None:
    with (
        StubUpstream([(429, {"Retry-After": "1"})], reply="after the wait") as stub,
        gateway(tmp_path, remote("limited", stub.url)) as server,
    ):
        started = time.monotonic()
        completion = client(server).chat.completions.create(
            model="limited", messages=[{"role": "user", "content": "hi"}]
        )
        assert completion.choices[0].message.content == "after the wait"
        assert len(stub.calls) == 2
        waited = stub.calls[1] - stub.calls[0]
        assert 1.0 <= waited < 2.0, waited  # Retry-After, not the 0.05 s backoff
        assert time.monotonic() - started >= 1.0
        # one attempt at the gateway's level: the retry happened inside it
        assert "attempts" not in completion.model_extra["smallfirst"]["route"]  # type: ignore[index]


def test_retries_are_bounded_in_count_and_a_4xx_is_not_retried(tmp_path: Path) -> None:
    with (
        StubUpstream([(503, {})] * 5 + [(400, {})]) as stub,
        gateway(tmp_path, remote("flaky", stub.url), remote_retries=2) as server,
    ):
        r = ask(server, "flaky")
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"
        assert len(stub.calls) == 3  # the first try and two retries
        backoffs = [b - a for a, b in zip(stub.calls, stub.calls[1:], strict=False)]
        assert backoffs[0] >= 0.025 and backoffs[1] >= 0.05  # exponential, with jitter
        stub.script = [(400, {})]
        r = ask(server, "flaky")
        assert r.status_code == 400 and len(stub.calls) == 4


def test_a_retry_after_beyond_the_budget_is_not_waited(tmp_path: Path) -> None:
    with (
        StubUpstream([(429, {"Retry-After": "30"})]) as stub,
        gateway(tmp_path, remote("slow", stub.url), remote_retry_budget_s=2) as server,
    ):
        started = time.monotonic()
        r = ask(server, "slow")
        assert r.status_code == 429 and time.monotonic() - started < 2
        assert len(stub.calls) == 1


# --- fallbacks ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_dead_upstream_falls_back_and_the_receipt_lists_both(
    tmp_path: Path, stream: bool
) -> None:
    with (
        StubUpstream(reply="the spare answers") as spare,
        gateway(
            tmp_path,
            remote("dead", dead_url(), fallbacks=["spare"]),
            remote("spare", spare.url),
            remote_retries=1,
        ) as server,
    ):
        c = client(server)
        messages: Any = [{"role": "user", "content": "hi"}]
        if stream:
            chunks = list(c.chat.completions.create(model="dead", messages=messages, stream=True))
            text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            assert {ch.model for ch in chunks} == {"spare"}
            receipt = chunks[-1].model_extra["smallfirst"]  # type: ignore[index]
        else:
            completion = c.chat.completions.create(model="dead", messages=messages)
            text = completion.choices[0].message.content or ""
            assert completion.model == "spare"
            receipt = completion.model_extra["smallfirst"]  # type: ignore[index]
        assert text == "the spare answers"
        assert receipt["model"] == "spare"
        assert attempts(receipt) == [("dead", "upstream_unavailable"), ("spare", None)]
        # the receipt's clock runs from the request's start: the failed try's time is in it
        failed_s = receipt["route"]["attempts"][0]["duration_s"]
        assert failed_s >= 0.025  # one retry, after a backoff of at least 0.05 * 0.5 s
        assert receipt["duration_s"] >= receipt["ttft_s"] >= failed_s
        assert receipt["route"]["attempts"][1]["duration_s"] is None
        stored = httpx.get(f"{server.url}/smallfirst/v1/receipts/{receipt['receipt_id']}")
        assert stored.json()["route"]["attempts"] == receipt["route"]["attempts"]


def test_a_request_error_is_not_tried_on_another_model(tmp_path: Path) -> None:
    with (
        StubUpstream([(400, {})]) as first,
        StubUpstream() as spare,
        gateway(
            tmp_path, remote("first", first.url, ["spare"]), remote("spare", spare.url)
        ) as server,
    ):
        r = ask(server, "first")
        assert r.status_code == 400 and r.json()["error"]["code"] == "upstream_error"
        assert spare.calls == []


def test_once_a_stream_has_begun_there_is_no_switch(tmp_path: Path) -> None:
    with (
        StubUpstream(["break"]) as first,
        StubUpstream() as spare,
        gateway(
            tmp_path, remote("first", first.url, ["spare"]), remote("spare", spare.url)
        ) as server,
        httpx.stream(
            "POST",
            server.url + "/v1/chat/completions",
            json={"model": "first", "messages": [{"role": "user", "content": "x"}], "stream": True},
            timeout=60,
        ) as r,
    ):
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        assert "error" in json.loads(events[-2])
        assert spare.calls == []
        failing = httpx.get(server.url + "/health").json()["upstreams"]["first"]
        assert failing == {"state": "ok", "recent_failures": 1, "until": None}


def test_when_every_model_fails_the_last_error_is_answered_and_stored(tmp_path: Path) -> None:
    with (
        StubUpstream([(500, {})] * 3) as second,
        gateway(
            tmp_path,
            remote("first", dead_url(), ["not-installed", "second"]),
            remote("second", second.url),
            remote_retries=0,
        ) as server,
    ):
        r = ask(server, "first")
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"
        page = httpx.get(server.url + "/smallfirst/v1/receipts").json()["data"]
        assert [p["status"] for p in page] == ["error"]
        assert attempts(page[0]) == [
            ("first", "upstream_unavailable"),
            ("not-installed", "model_not_found"),
            ("second", "upstream_error"),
        ]


# --- cooldown -----------------------------------------------------------------------------


def upstream_state(server: LiveServer, model: str) -> str:
    health = httpx.get(server.url + "/health").json()
    return str(health["upstreams"].get(model, {"state": "ok"})["state"])


def test_a_failing_upstream_cools_down_then_a_probe_recovers_it(tmp_path: Path) -> None:
    with (
        StubUpstream([(500, {})] * 2) as stub,
        gateway(
            tmp_path,
            remote("shaky", stub.url),
            remote_retries=0,
            cooldown_failures=2,
            cooldown_window_s=30,
            cooldown_s=1,
        ) as server,
    ):
        assert [ask(server, "shaky").status_code for _ in range(2)] == [502, 502]
        assert upstream_state(server, "shaky") == "cooling_down"
        health = httpx.get(server.url + "/health").json()["upstreams"]["shaky"]
        assert time.time() < health["until"] <= time.time() + 1.5
        metrics = httpx.get(server.url + "/metrics").text
        assert 'smallfirst_upstream_state{model="shaky",state="cooling_down"} 1.0' in metrics
        r = ask(server, "shaky")  # skipped without a call
        assert r.status_code == 503 and r.json()["error"]["code"] == "upstream_cooling_down"
        assert len(stub.calls) == 2
        time.sleep(1.1)
        r = ask(server, "shaky")  # the probe, and the stub works again
        assert r.status_code == 200 and len(stub.calls) == 3
        assert upstream_state(server, "shaky") == "ok"
        assert "smallfirst_upstream_state{" not in httpx.get(server.url + "/metrics").text


@pytest.mark.fast
@pytest.mark.parametrize(
    ("error", "tries_another"),
    [
        (e.UpstreamUnavailableError("down"), True),
        (e.GenerationError("crashed"), True),
        (e.OverloadedError("queue full", retry_after_s=3), True),
        (e.ShuttingDownError("draining"), False),
        (e.ContextLengthError(5000, 4096, None), False),
        (e.InvalidRequestError("bad"), False),
    ],
)
def test_which_failures_another_model_may_answer(
    error: e.SmallfirstError, tries_another: bool
) -> None:
    # a busy model's queue is worth another model's try; a gateway that is draining is not
    assert falls_back(error) is tries_another
