"""Receipts through the real server and openai client: fields, headers, store, summary, API."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from smallfirst.server.app import create_app
from smallfirst.settings import Settings
from smallfirst.store.sqlite import SqliteStore
from tests.conftest import SMOL, LiveServer, free_port, wait_until_up

MSG = [{"role": "user", "content": "Say something about rivers."}]
ENERGY_FIELDS = {"energy_j", "method", "scope", "source", "note", "cpu_s"}


def get(server: LiveServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.url + path, params=params)


def check_local_receipt(r: dict[str, Any], model: str = SMOL) -> None:
    assert r["model"] == model and r["status"] == "ok" and r["engine"] == "llama.cpp"
    assert set(r["energy"]) == ENERGY_FIELDS
    assert r["energy"]["method"] in ("measured", "estimated")
    assert r["energy"]["energy_j"] > 0 and r["energy"]["cpu_s"] > 0 and r["energy"]["source"]
    assert r["tokens"]["prompt"] > 0 and r["tokens"]["completion"] > 0
    assert r["duration_s"] > 0 and r["ttft_s"] is not None and 0 < r["ttft_s"] <= r["duration_s"]
    assert r["cost"]["cost_usd"] > 0 and "kWh" in r["cost"]["method"]
    kwh = r["energy"]["energy_j"] / 3.6e6
    assert r["carbon"]["co2_g"] == pytest.approx(
        kwh * r["carbon"]["grid_g_per_kwh"] * r["carbon"]["pue"]
    )
    assert r["carbon"]["basis"] == "location-based annual average"
    assert r["baseline"]["model"] == "qwen2.5-coder-1.5b-instruct"
    assert r["baseline"]["energy_j"] > 0, r["baseline"]["source"]
    assert r["savings"]["energy_j"] == pytest.approx(
        r["baseline"]["energy_j"] - r["energy"]["energy_j"]
    )


def test_non_stream_receipt_body_headers_and_store(
    gateway: LiveServer, client: openai.OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(model=SMOL, messages=MSG, max_tokens=12)  # type: ignore[arg-type]
    completion = raw.parse()
    receipt = completion.model_extra["smallfirst"]  # type: ignore[index]
    check_local_receipt(receipt)
    usage = completion.usage
    assert usage is not None and 0 < usage.completion_tokens <= 12
    # sampled (temperature 1): the model may end before max_tokens; the receipt counts as usage
    assert receipt["tokens"] == {
        "prompt": usage.prompt_tokens,
        "completion": usage.completion_tokens,
    }
    stored = get(gateway, f"/smallfirst/v1/receipts/{receipt['receipt_id']}").json()
    assert stored == receipt
    h = raw.headers
    assert h["x-smallfirst-model"] == SMOL
    assert h["x-smallfirst-energy-method"] == stored["energy"]["method"]
    assert float(h["x-smallfirst-energy-j"]) == pytest.approx(
        stored["energy"]["energy_j"], rel=1e-5
    )
    assert float(h["x-smallfirst-cost-usd"]) == pytest.approx(stored["cost"]["cost_usd"], rel=1e-5)
    assert float(h["x-smallfirst-co2-g"]) == pytest.approx(stored["carbon"]["co2_g"], rel=1e-5)


def test_stream_receipt_in_final_chunk_and_committed_before_it(
    gateway: LiveServer, client: openai.OpenAI
) -> None:
    for include_usage in (False, True):
        stream = client.chat.completions.create(
            model=SMOL,
            messages=MSG,
            max_tokens=8,
            stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": include_usage},
        )
        chunks = []
        for chunk in stream:
            chunks.append(chunk)
            extra = chunk.model_extra or {}
            if "smallfirst" in extra:
                # the moment the final chunk arrives, its receipt is already in the store
                rid = extra["smallfirst"]["receipt_id"]
                assert get(gateway, f"/smallfirst/v1/receipts/{rid}").status_code == 200
        receipts = [
            c.model_extra["smallfirst"]
            for c in chunks
            if c.model_extra and "smallfirst" in c.model_extra
        ]
        assert len(receipts) == 1 and "smallfirst" in (chunks[-1].model_extra or {})
        check_local_receipt(receipts[0])
        assert receipts[0]["tokens"]["completion"] == 8


def test_summary_equals_sum_of_receipts(gateway: LiveServer, client: openai.OpenAI) -> None:
    for _ in range(2):
        client.chat.completions.create(model=SMOL, messages=MSG, max_tokens=4)  # type: ignore[arg-type]
    receipts: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = get(gateway, "/smallfirst/v1/receipts", **params).json()
        receipts += page["data"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert len({r["receipt_id"] for r in receipts}) == len(receipts) >= 2
    total = get(gateway, "/smallfirst/v1/summary").json()["total"]
    assert total["requests"] == len(receipts)

    def add(f: Any) -> float:
        return math.fsum(v for r in receipts if (v := f(r)) is not None)

    assert total["energy_j"] == pytest.approx(add(lambda r: r["energy"]["energy_j"]))
    assert total["cost_usd"] == pytest.approx(add(lambda r: r["cost"]["cost_usd"]))
    assert total["co2_g"] == pytest.approx(add(lambda r: r["carbon"]["co2_g"]))
    assert total["completion_tokens"] == add(lambda r: r["tokens"]["completion"])
    assert total["saved_energy_j"] == pytest.approx(add(lambda r: r["savings"]["energy_j"]))
    by_model = {m["model"]: m for m in get(gateway, "/smallfirst/v1/summary").json()["models"]}
    assert sum(m["requests"] for m in by_model.values()) == total["requests"]


def test_filters(gateway: LiveServer, client: openai.OpenAI) -> None:
    client.chat.completions.create(model=SMOL, messages=MSG, max_tokens=2)  # type: ignore[arg-type]
    assert get(gateway, "/smallfirst/v1/receipts", since="1h", model=SMOL).json()["data"]
    assert get(gateway, "/smallfirst/v1/receipts", model="other").json()["data"] == []
    assert (
        get(gateway, "/smallfirst/v1/receipts", until="2000-01-01T00:00:00Z").json()["data"] == []
    )
    assert (
        get(gateway, "/smallfirst/v1/summary", since=str(time.time() + 60)).json()["total"][
            "requests"
        ]
        == 0
    )


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/smallfirst/v1/receipts", {"since": "yesterday"}, "since"),
        ("/smallfirst/v1/receipts", {"until": "1x"}, "until"),
        ("/smallfirst/v1/receipts", {"limit": "0"}, "limit"),
        ("/smallfirst/v1/receipts", {"limit": "ten"}, "limit"),
        ("/smallfirst/v1/receipts", {"cursor": "%%%"}, "cursor"),
        ("/smallfirst/v1/receipts", {"colour": "red"}, "colour"),
        ("/smallfirst/v1/summary", {"since": "2h", "until": "3h"}, "since"),
        ("/smallfirst/v1/summary", {"since": "soon"}, "since"),
    ],
)
@pytest.mark.fast
def test_malformed_filters_are_400(
    tmp_path: Path, path: str, params: dict[str, str], param: str
) -> None:
    # refused before the store is read: an app of its own, in process, is enough
    app = create_app(Settings(data_dir=tmp_path, default_router=False))
    with TestClient(app) as api:
        r = api.get(path, params=params)
    assert r.status_code == 400
    assert (
        r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"
    )


def test_metrics(gateway: LiveServer, client: openai.OpenAI) -> None:
    client.chat.completions.create(model=SMOL, messages=MSG, max_tokens=2)  # type: ignore[arg-type]
    text = httpx.get(gateway.url + "/metrics").text
    assert f'smallfirst_requests_total{{model="{SMOL}",status="ok"}}' in text
    assert (
        'smallfirst_energy_joules_total{method="' in text
        or "smallfirst_energy_joules_total{model=" in text
    )
    assert "smallfirst_request_duration_seconds_bucket" in text


def test_kill_9_keeps_the_receipt(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SMALLFIRST_MODELS_DIR": str(settings.models_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smallfirst.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
            "--default-model",
            SMOL,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url + "/health", proc)
        r = httpx.post(
            url + "/v1/chat/completions",
            json={"model": SMOL, "messages": MSG, "max_tokens": 3},
            timeout=120,
        )
        rid = r.json()["smallfirst"]["receipt_id"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    store = SqliteStore(tmp_path / "smallfirst.db")
    assert store.integrity_check() == "ok"
    found = store.get(rid)
    assert found is not None and found.status == "ok" and found.completion_tokens == 3


def test_usage_cli_matches_the_summary(
    gateway: LiveServer, client: openai.OpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from smallfirst.cli import main

    client.chat.completions.create(model=SMOL, messages=MSG, max_tokens=2)  # type: ignore[arg-type]
    data_dir = str(gateway.settings.data_dir)
    assert main(["usage", "--json", "--data-dir", data_dir]) == 0
    local = json.loads(capsys.readouterr().out)
    assert main(["usage", "--json", "--url", gateway.url]) == 0
    remote = json.loads(capsys.readouterr().out)
    api = get(gateway, "/smallfirst/v1/summary").json()
    assert local["total"] == remote["total"] == api["total"]
    assert main(["usage", "--since", "1h", "--data-dir", data_dir]) == 0
    table = capsys.readouterr().out
    assert SMOL in table and "total" in table and "estimated" in table
    with pytest.raises(SystemExit, match="since"):
        main(["usage", "--since", "soonish", "--data-dir", data_dir])
