"""Overload control from the outside: bounded queues answer 429 with Retry-After, at once.

A burst on the real SmolLM2 beyond its queue gets fast 429s while the admitted requests
complete; a slow loopback upstream (a remote model allowed one request in flight) holds
its slot so that a second request waits out ``queue_timeout_s``. Refused requests store no
receipt, and ``/metrics`` shows each model's queue.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from smallfirst.settings import Settings, UserModel
from smallfirst.stub_upstream import StubUpstream
from tests.conftest import SMOL, LiveServer

HOLD_S = 1.5


def receipts(url: str, model: str) -> list[dict[str, object]]:
    r = httpx.get(url + "/smallfirst/v1/receipts", params={"model": model, "limit": 100})
    assert r.status_code == 200, r.text
    data: list[dict[str, object]] = r.json()["data"]
    return data


@pytest.fixture()
def slow_gateway(tmp_path: Path) -> Iterator[LiveServer]:
    with StubUpstream(reply="slow", delay_s=HOLD_S) as stub:
        settings = Settings(
            data_dir=tmp_path,
            models_dir=tmp_path / "models",
            default_router=False,
            models=(UserModel(name="slow", base_url=stub.url),),
            remote_max_in_flight=1,
            max_queue=4,
            queue_timeout_s=0.3,
        )
        with LiveServer(settings) as server:
            yield server


def test_a_request_that_waits_past_queue_timeout_gets_429(slow_gateway: LiveServer) -> None:
    client = openai.OpenAI(base_url=slow_gateway.url + "/v1", api_key="unused", max_retries=0)
    ask = {"model": "slow", "messages": [{"role": "user", "content": "hi"}]}
    held: list[str | None] = []
    first = threading.Thread(
        target=lambda: held.append(
            client.chat.completions.create(**ask).choices[0].message.content  # type: ignore[call-overload]
        )
    )
    first.start()
    time.sleep(0.3)  # the first request holds the upstream's only slot
    began = time.monotonic()
    r = httpx.post(slow_gateway.url + "/v1/chat/completions", json=ask, timeout=10)
    waited = time.monotonic() - began
    assert r.status_code == 429, r.text
    assert 0.25 < waited < 1.0, waited  # queue_timeout_s, not the upstream's 1.5 s
    error = r.json()["error"]
    assert error["code"] == "server_overloaded" and error["type"] == "server_error"
    assert int(r.headers["retry-after"]) >= 1
    first.join(10)
    assert held == ["slow"]
    assert len(receipts(slow_gateway.url, "slow")) == 1  # the refused request stored nothing

    metrics = httpx.get(slow_gateway.url + "/metrics").text
    assert 'smallfirst_queue_depth{model="slow"} 0.0' in metrics
    assert 'smallfirst_queue_wait_seconds_count{model="slow"} 2.0' in metrics
    assert 'smallfirst_queue_refused_total{model="slow",reason="queue_timeout"} 1.0' in metrics


@pytest.fixture()
def small_queue(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    # one generation at a time with either engine (the batched one runs `parallel`)
    narrow = settings.model_copy(update={"data_dir": tmp_path, "max_queue": 1, "parallel": 1})
    with LiveServer(narrow) as server:
        yield server


def test_a_burst_beyond_the_queue_gets_fast_429s_while_admitted_requests_complete(
    small_queue: LiveServer,
) -> None:
    client = openai.AsyncOpenAI(base_url=small_queue.url + "/v1", api_key="unused", max_retries=0)
    ask = {
        "model": SMOL,
        "messages": [{"role": "user", "content": "Count from 1 to 50."}],
        "max_tokens": 48,
        "temperature": 0.0,
    }

    async def one() -> tuple[float, object]:
        began = time.monotonic()
        try:
            r = await client.chat.completions.with_raw_response.create(**ask)  # type: ignore[call-overload]
            result: object = r.parse()
        except openai.RateLimitError as exc:
            result = exc
        return time.monotonic() - began, result

    async def burst() -> list[tuple[float, object]]:
        await one()  # the model is loaded before the burst
        return await asyncio.gather(*(one() for _ in range(8)))

    results = asyncio.run(burst())
    refused = [(s, r) for s, r in results if isinstance(r, openai.RateLimitError)]
    answered = [(s, r) for s, r in results if not isinstance(r, openai.RateLimitError)]
    # one generation runs and one waits; the other six are refused at once
    assert len(answered) >= 2 and len(refused) >= 4, results
    for seconds, exc in refused:
        assert isinstance(exc, openai.RateLimitError)
        assert seconds < 0.5, seconds
        assert int(exc.response.headers["retry-after"]) >= 1
        assert json.loads(exc.response.text)["error"]["code"] == "server_overloaded"
    for _, completion in answered:
        assert completion.choices[0].message.content  # type: ignore[attr-defined]
    assert max(s for s, _ in answered) > max(s for s, _ in refused)
    # the warm-up and the admitted ones have receipts; the refused ones none
    assert len(receipts(small_queue.url, SMOL)) == 1 + len(answered)
    metrics = httpx.get(small_queue.url + "/metrics").text
    assert f'smallfirst_queue_depth{{model="{SMOL}"}} 0.0' in metrics
    assert f'smallfirst_queue_refused_total{{model="{SMOL}",reason="queue_full"}}' in metrics
