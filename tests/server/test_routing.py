"""model "auto" through the real server: the router's choice, recorded in the receipt.

The router artifact here is fitted on synthetic evaluation results whose model names are the
installed ladder's, so that the server routes between real models; what it proves is the
plumbing (policy parsing, choice, receipt), not the quality of a router fitted on real data.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smallfirst.routing import artifact as ra
from smallfirst.routing.training.table import build_table
from smallfirst.routing.training.train import train
from smallfirst.settings import Settings
from tests.conftest import QWEN, SMOL, LiveServer, require_models
from tests.routing.synthetic import MODELS, synthetic

# Two tiers, both installed wherever the tests run (the 1.5B model need not be): the
# synthetic XS model plays SmolLM2 and the synthetic M model plays Qwen-0.5B.
NAMES = {MODELS[0]: SMOL, MODELS[2]: QWEN}
EASY = "Explain: apple blue cat sun tree."
HARD = "Explain: " + " ".join(["integral theorem recursion entropy manifold eigenvalue."] * 8)


def chat(server: LiveServer, model: str, content: str) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 2},
        timeout=120,
    )


@pytest.fixture(scope="module")
def routed(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    require_models(settings, SMOL, QWEN)
    data_dir = tmp_path_factory.mktemp("routed")
    results, prompts = synthetic(600, seed=3)
    results = [dataclasses.replace(r, model=NAMES[r.model]) for r in results if r.model in NAMES]
    artifact, _ = train(build_table(results, prompts), seed=0)
    ra.save(artifact, data_dir)
    with LiveServer(settings.model_copy(update={"data_dir": data_dir})) as server:
        yield server


def receipt(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["model"] == body["smallfirst"]["model"]
    return body["smallfirst"]


def test_easy_prompt_goes_small_and_hard_goes_larger(routed: LiveServer) -> None:
    easy = receipt(chat(routed, "auto", EASY))
    hard = receipt(chat(routed, "auto", HARD))
    assert easy["model"] == SMOL and hard["model"] == QWEN
    for r, policy in ((easy, "auto"), (hard, "auto")):
        assert r["policy"] == policy and r["route"]["policy"] == policy
        assert r["route"]["strategy"] == "predictive" and r["route"]["why"]
        assert 0 <= r["route"]["predicted_quality"] <= 1
        assert set(r["route"]["scores"]) == {SMOL, QWEN}
        calibration = r["route"]["calibration"]
        assert calibration["feasible"] is True and 0 < calibration["accuracy"] <= 1
        assert calibration["threshold"] is not None
    stored = httpx.get(routed.url + f"/smallfirst/v1/receipts/{hard['receipt_id']}").json()
    assert stored["route"] == hard["route"]


def test_stricter_quality_never_picks_a_cheaper_model(routed: LiveServer) -> None:
    order = [SMOL, QWEN]
    chosen = [receipt(chat(routed, f"auto:quality={q}", HARD))["model"] for q in (0.6, 0.8, 1.0)]
    ranks = [order.index(m) for m in chosen]
    assert ranks == sorted(ranks)


def test_an_unreachable_budget_says_so_in_the_route(routed: LiveServer) -> None:
    # a budget below what the cheapest model alone spends cannot be met: it is served by
    # the cheapest model, and the route says the target was out of reach
    r = receipt(chat(routed, "auto:energy=0.01", HARD))
    assert r["model"] == SMOL
    calibration = r["route"]["calibration"]
    assert calibration["feasible"] is False and calibration["energy_fraction"] > 0.01
    easy = receipt(chat(routed, "auto:quality=0.8", EASY))
    assert easy["route"]["calibration"]["feasible"] is True


def test_named_model_is_not_routed(routed: LiveServer) -> None:
    r = receipt(chat(routed, SMOL, HARD))
    assert r["model"] == SMOL and r["policy"] is None


def test_models_list_the_auto_policies(routed: LiveServer) -> None:
    ids = [m["id"] for m in httpx.get(routed.url + "/v1/models").json()["data"]]
    assert "auto" in ids and "auto:quality=0.95" in ids and "auto:energy=0.3" in ids


@pytest.mark.parametrize("model", ["auto:quality=2", "auto:speed=1", "auto:quality=abc"])
def test_malformed_policy_is_400(routed: LiveServer, gateway: LiveServer, model: str) -> None:
    for server in (routed, gateway):  # with and without a router artifact
        r = chat(server, model, EASY)
        assert r.status_code == 400 and r.json()["error"]["param"] == "model"


def test_without_a_router_auto_is_the_default_model(
    gateway: LiveServer, settings: Settings
) -> None:
    r = receipt(chat(gateway, "auto", EASY))
    assert r["model"] == settings.default_model
    assert r["route"]["strategy"] == "default" and "router fit" in r["route"]["why"]


def test_artifact_dir_is_per_data_dir(routed: LiveServer, settings: Settings) -> None:
    assert ra.load_latest(Path(settings.data_dir)) is None  # the session gateway has none


def test_cascade_counts_the_energy_of_every_attempt(routed: LiveServer) -> None:
    # quality=1 needs the reference's accuracy: the small model's answer is never enough
    r = chat(routed, "cascade:quality=1", HARD)
    body = r.json()
    receipt_ = receipt(r)
    route = receipt_["route"]
    assert route["strategy"] == "cascade:output" and route["policy"] == "cascade:quality=1"
    attempts = route["attempts"]
    assert [a["model"] for a in attempts] == [SMOL, QWEN] and route["escalations"] == 1
    assert [a["accepted"] for a in attempts] == [False, True]
    assert 0 <= attempts[0]["confidence"] <= 1 and attempts[1]["confidence"] is None
    # the answer, its usage and the receipt's tokens are the accepted attempt's
    assert body["model"] == receipt_["model"] == QWEN
    assert body["usage"]["completion_tokens"] == attempts[1]["completion_tokens"]
    energy_j = receipt_["energy"]["energy_j"]
    assert energy_j == pytest.approx(sum(a["energy_j"] for a in attempts), abs=1e-3)
    assert energy_j > attempts[1]["energy_j"] > 0
    assert "sum of 2 cascade attempts" in receipt_["energy"]["source"]
    stored = httpx.get(routed.url + f"/smallfirst/v1/receipts/{receipt_['receipt_id']}").json()
    assert stored["route"] == route and stored["energy"]["energy_j"] == pytest.approx(energy_j)


def test_cascade_stream_sends_only_the_accepted_answer(routed: LiveServer) -> None:
    with httpx.stream(
        "POST",
        routed.url + "/v1/chat/completions",
        json={
            "model": "cascade:quality=1",
            "messages": [{"role": "user", "content": HARD}],
            "max_tokens": 2,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        timeout=120,
    ) as r:
        assert r.status_code == 200
        events = [
            json.loads(line[6:])
            for line in r.iter_lines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
    assert {e["model"] for e in events} == {QWEN}
    final = events[-1]
    route = final["smallfirst"]["route"]
    assert [a["model"] for a in route["attempts"]] == [SMOL, QWEN]
    assert final["usage"]["completion_tokens"] == route["attempts"][1]["completion_tokens"]


def test_cascade_accepts_the_first_rung_when_confident(routed: LiveServer) -> None:
    # a lax target accepts the cheapest model's answer: one attempt, no escalation
    route = receipt(chat(routed, "cascade:energy=0.01", EASY))["route"]
    assert [a["model"] for a in route["attempts"]] == [SMOL] and route["escalations"] == 0
    assert route["attempts"][0]["accepted"] is True


@pytest.mark.fast
def test_combined_energy_is_a_sum_of_one_method_or_unknown() -> None:
    from smallfirst.metering.meter import Energy
    from smallfirst.server.cascading import combine

    a = Energy(2.0, "estimated", "process-cpu-time+ram", "x", cpu_s=0.5)
    b = Energy(3.5, "estimated", "process-cpu-time+ram", "y", cpu_s=1.0)
    both = combine([a, b])
    assert (both.energy_j, both.method, both.cpu_s) == (5.5, "estimated", 1.5)
    assert "sum of 2 cascade attempts" in (both.source or "")
    mixed = combine([a, Energy(1.0, "measured")])
    assert mixed.energy_j is None and mixed.method == "unknown" and mixed.note
    assert combine([a, Energy(None, "unknown")]).energy_j is None
