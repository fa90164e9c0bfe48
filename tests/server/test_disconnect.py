"""A client that goes away frees the model for the next request.

Judged from the outside: the request's stored receipt says ``cancelled`` (the gateway saw
the hang-up before the answer was complete), and a short request sent right after is not
queued behind the abandoned generation, which would hold the model for longer than the
bound used here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai

from smallfirst.settings import Settings, UserModel
from smallfirst.stub_upstream import StubUpstream
from tests.conftest import SMOL, LiveServer

LONG = {
    "model": SMOL,
    "messages": [{"role": "user", "content": "Write a very long story about a lighthouse."}],
    "max_tokens": 1800,
    "temperature": 1.0,
    "seed": 1,
}
# 1800 tokens take > 10 s on this machine; a 5-token answer takes well under a second
FREED_WITHIN_S = 5.0

T = TypeVar("T")


def until(fetch: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll ``fetch`` until it returns something; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (found := fetch()) is None:
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.05)
    return found


def receipt_by_id(gateway: LiveServer, receipt_id: str) -> dict[str, Any] | None:
    r = httpx.get(f"{gateway.url}/smallfirst/v1/receipts/{receipt_id}")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


def receipt_since(gateway: LiveServer, since: float) -> dict[str, Any] | None:
    """The one receipt of a request sent after ``since`` (unix seconds), once stored."""
    r = httpx.get(gateway.url + "/smallfirst/v1/receipts", params={"since": since, "model": SMOL})
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    assert len(data) <= 1, data
    return data[0] if data else None


def short_request_s(client: openai.OpenAI) -> float:
    """How long a 5-token answer takes now: long if the model is still busy elsewhere."""
    started = time.monotonic()
    r = client.chat.completions.create(model=SMOL, messages=LONG["messages"], max_tokens=5)  # type: ignore[call-overload]
    assert r.usage.completion_tokens == 5
    return time.monotonic() - started


def test_stream_disconnect_frees_the_model(gateway: LiveServer, client: openai.OpenAI) -> None:
    # the first chunks can take more than httpx's default 5 s on a busy 2-core machine;
    # what is tested is the hang-up, not the latency
    with httpx.stream(
        "POST", gateway.url + "/v1/chat/completions", json={**LONG, "stream": True}, timeout=60
    ) as r:
        receipt_id = r.headers["x-smallfirst-receipt-id"]
        for i, _ in enumerate(r.iter_lines()):
            if i > 6:
                break
    # "cancelled", not "ok": the answer was still being generated when we hung up
    receipt = until(lambda: receipt_by_id(gateway, receipt_id), FREED_WITHIN_S, "receipt")
    assert receipt["status"] == "cancelled"
    assert short_request_s(client) < FREED_WITHIN_S


def test_non_stream_disconnect_frees_the_model(gateway: LiveServer, client: openai.OpenAI) -> None:
    short_request_s(client)  # load the model first, so that the hang-up comes mid-generation
    since = time.time()
    try:
        httpx.post(gateway.url + "/v1/chat/completions", json=LONG, timeout=1.0)
        raise AssertionError("expected the long request to time out")
    except httpx.TimeoutException:
        pass
    receipt = until(lambda: receipt_since(gateway, since), FREED_WITHIN_S, "receipt")
    assert receipt["status"] == "cancelled"
    assert short_request_s(client) < FREED_WITHIN_S


def established_to(port: int) -> int:
    """TCP connections to ``port`` on loopback now open (from /proc/net/tcp)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    # fields: sl local_address rem_address st ...; addresses are HEXIP:HEXPORT
    return sum(
        1 for f in map(str.split, lines) if int(f[2].split(":")[1], 16) == port and f[3] == "01"
    )


def test_hung_up_remote_streams_give_their_upstream_connections_back(tmp_path: Path) -> None:
    """A client that hangs up on a remote stream must not keep the upstream connection.

    Found by bench/soak.py: each hang-up left one pooled connection checked out, and after
    httpx's pool limit (100) every request to that upstream timed out.
    """
    with StubUpstream(token_delay_s=0.05) as stub:
        model = UserModel(name="stub", base_url=stub.url, model_id="stub")
        settings = Settings(
            data_dir=tmp_path, models=(model,), default_model="stub", default_router=False
        )
        with LiveServer(settings) as gw:
            body = {"model": "stub", "stream": True, "max_tokens": 14, "messages": LONG["messages"]}
            for _ in range(12):
                with (
                    httpx.Client(base_url=gw.url, timeout=10) as http,
                    http.stream("POST", "/v1/chat/completions", json=body) as r,
                ):
                    assert r.status_code == 200
                    next(line for line in r.iter_lines() if line.startswith("data: {"))
            until(lambda: True if established_to(stub.port) <= 2 else None, 5.0, "pool drain")
            r2 = httpx.post(gw.url + "/v1/chat/completions", json=body | {"stream": False})
            assert r2.status_code == 200, r2.text
