"""A client that goes away frees the model for the next request."""

from __future__ import annotations

import time

import httpx
import openai

from smallfirst.engines.llama import LlamaEngine
from tests.conftest import SMOL, LiveServer

LONG = {
    "model": SMOL,
    "messages": [{"role": "user", "content": "Write a very long story about a lighthouse."}],
    "max_tokens": 1800,
    "temperature": 1.0,
    "seed": 1,
}


def engine(server: LiveServer) -> LlamaEngine:
    e = server.app.state.pool._engines[SMOL]
    assert isinstance(e, LlamaEngine)
    return e


def wait_idle(e: LlamaEngine, timeout_s: float) -> float:
    start = time.monotonic()
    while e._gen_lock.locked() or e.in_flight:
        assert time.monotonic() - start < timeout_s, "the model is still busy"
        time.sleep(0.01)
    return time.monotonic() - start


def test_stream_disconnect_frees_the_model(gateway: LiveServer, client: openai.OpenAI) -> None:
    # the first chunks can take more than httpx's default 5 s on a busy 2-core machine;
    # what is tested is the hang-up, not the latency
    with httpx.stream(
        "POST", gateway.url + "/v1/chat/completions", json={**LONG, "stream": True}, timeout=60
    ) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 6:
                break
        assert engine(gateway)._gen_lock.locked()  # still generating when we hang up
    # 1800 tokens take > 10 s here; freed within a few token times of the hang-up
    assert wait_idle(engine(gateway), 5.0) < 5.0
    r2 = client.chat.completions.create(model=SMOL, messages=LONG["messages"], max_tokens=5)  # type: ignore[call-overload]
    assert r2.usage.completion_tokens == 5


def test_non_stream_disconnect_frees_the_model(gateway: LiveServer) -> None:
    try:
        httpx.post(gateway.url + "/v1/chat/completions", json=LONG, timeout=1.0)
        raise AssertionError("expected the long request to time out")
    except httpx.TimeoutException:
        pass
    assert wait_idle(engine(gateway), 5.0) < 5.0
