"""The batched engine behind a real gateway, driven by the openai client (issue #14).

A gateway with ``engine_batching`` on serves SmolLM2-135M: concurrent greedy streams give
the same tokens as each request alone, a second chat turn reuses the first turn's KV and
says so in ``usage.prompt_tokens_details.cached_tokens``, a hang-up frees the slot at once,
and the receipts of concurrent requests add up to what the process spent while they ran.

Where answers are compared, the "alone" answers come from a gateway of their own, started
fresh, so both sides evaluate the whole prompt (a prompt found in the cache is not re-read).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from smallfirst.metering.meter import window_energy_j
from smallfirst.settings import Settings
from tests.conftest import SMOL, LiveServer

PROMPTS = [
    "Write three sentences about the sea.",
    "What is the capital of France? Explain briefly.",
    "Name five colours and one thing of each colour.",
    "Tell me a short story about a cat and a dog.",
]


def batched(settings: Settings, tmp_path: Path, **over: Any) -> Settings:
    return settings.model_copy(
        update={"engine_batching": True, "parallel": 4, "data_dir": tmp_path, **over}
    )


@pytest.fixture()
def gateway(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(batched(settings, tmp_path / "a")) as server:
        yield server


def client_of(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def stream_text(client: openai.OpenAI, content: str, max_tokens: int = 32) -> str:
    stream = client.chat.completions.create(
        model=SMOL,
        messages=[{"role": "user", "content": content}],
        temperature=0,
        max_tokens=max_tokens,
        stream=True,
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def concurrently(*calls: Any) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


def test_four_concurrent_streams_equal_each_alone(
    gateway: LiveServer, settings: Settings, tmp_path: Path
) -> None:
    alone = []
    for i, prompt in enumerate(PROMPTS):  # a fresh gateway each: an empty KV cache
        with LiveServer(batched(settings, tmp_path / f"alone{i}")) as server:
            alone.append(stream_text(client_of(server), prompt))
    client = client_of(gateway)
    together = concurrently(*(lambda p=p: stream_text(client, p) for p in PROMPTS))
    assert together == alone
    assert all(together)


def two_turns(client: openai.OpenAI, *, reuse: bool) -> str:
    """A two-turn chat; checks what the second turn reports as cached, returns its answer."""
    turn1: list[Any] = [{"role": "user", "content": PROMPTS[0]}]
    first = client.chat.completions.create(model=SMOL, messages=turn1, temperature=0, max_tokens=16)
    assert first.usage is not None and first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    turn2 = [
        *turn1,
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And about rivers?"},
    ]
    second = client.chat.completions.create(model=SMOL, messages=turn2, temperature=0, max_tokens=8)
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens
    if not reuse:
        assert cached == 0
        return second.choices[0].message.content or ""
    assert cached is not None and cached >= first.usage.prompt_tokens
    assert cached < second.usage.prompt_tokens
    return second.choices[0].message.content or ""


def test_second_turn_reports_cached_tokens(gateway: LiveServer) -> None:
    # the first turn's cached_tokens is 0: the load's warm-up leaves no prefix behind
    assert two_turns(client_of(gateway), reuse=True)


def test_with_prefix_reuse_off_every_prompt_is_read_in_full(
    settings: Settings, tmp_path: Path
) -> None:
    with LiveServer(batched(settings, tmp_path, prefix_reuse=False)) as server:
        assert two_turns(client_of(server), reuse=False)


def test_a_hang_up_frees_the_slot(settings: Settings, tmp_path: Path) -> None:
    # one slot: the next request can only run once the abandoned one has left it
    with LiveServer(batched(settings, tmp_path, parallel=1, queue_timeout_s=5.0)) as server:
        body = {
            "model": SMOL,
            "messages": [{"role": "user", "content": "Write a very long story."}],
            "max_tokens": 1500,
            "stream": True,
        }
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as r:
            for i, _ in enumerate(r.iter_lines()):
                if i > 6:
                    break
        # served (not a 429 after the 5 s queue timeout) and from a cleared slot
        reply = client_of(server).chat.completions.create(
            model=SMOL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_receipts_of_concurrent_requests_add_up_to_the_window(gateway: LiveServer) -> None:
    client = client_of(gateway)
    stream_text(client, "Hi", 2)  # load the model before the window is read
    metering = gateway.app.state.metering
    before = window_energy_j(metering.accountant, metering.constants)

    def ask(prompt: str) -> float:
        reply = client.chat.completions.with_raw_response.create(
            model=SMOL, messages=[{"role": "user", "content": prompt}], max_tokens=24
        )
        return float(reply.parse().model_extra["smallfirst"]["energy"]["energy_j"])

    energies = concurrently(*(lambda p=p: ask(p) for p in PROMPTS))
    spent = window_energy_j(metering.accountant, metering.constants) - before
    assert all(e > 0 for e in energies)
    assert sum(energies) == pytest.approx(spent, rel=1e-6)
