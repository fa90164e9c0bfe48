"""llama.cpp's own ``llama-server`` as a remote tier beside an in-process model (#18).

The server is the one built from the vendored llama.cpp (:mod:`smallfirst.peers`: built
once per machine, 8-15 minutes on 2 cores, then cached; ``make test`` builds it before
pytest so that the build's progress shows). It serves SmolLM2's GGUF under another name,
on one thread and a small context, on a free loopback port. Its per-token profile comes
from ``smallfirst models profile --pid`` run against it (the real CLI, in a subprocess),
and a gateway with SmolLM2 in-process and the llama-server tier routes ``auto`` across
both, with the receipts of each tier labelled by how their joules were obtained.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from smallfirst.catalog import Catalog
from smallfirst.metering.upstream_probe import process_cpu_s
from smallfirst.peers import ensure_peers
from smallfirst.routing import artifact as ra
from smallfirst.routing.training.table import build_table
from smallfirst.routing.training.train import train
from smallfirst.settings import Settings, UserModel
from tests.conftest import SMOL, LiveServer, free_port, wait_until_up
from tests.routing.synthetic import MODELS, synthetic
from tests.server.test_routing import EASY, HARD

TIER = "smol-llama-server"  # the llama-server tier's name in the gateway


@dataclass(frozen=True)
class LlamaServer:
    url: str  # its OpenAI base URL
    pid: int


def _say(line: str) -> None:
    # past pytest's capture: a first build takes minutes and must not look like a hang
    print(f"[llama-server build] {line}", file=sys.__stderr__, flush=True)


@pytest.fixture(scope="module")
def llama_server(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    peers = ensure_peers(progress=_say)
    catalog = Catalog(settings)
    gguf = catalog.file_path(catalog.get(SMOL))
    assert gguf is not None
    port = free_port()
    command = peers.server_command(
        gguf, port=port, threads=1, n_ctx=2048, extra=["-np", "1", "--alias", "smol"]
    )
    # a file, not a pipe: a full pipe would block the server
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            try:
                wait_until_up(url + "/models", proc)
            except RuntimeError:
                raise RuntimeError(
                    f"llama-server did not start: {log_path.read_text()[-2000:]}"
                ) from None
            yield LlamaServer(url, proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)


def _tier(server: LlamaServer) -> UserModel:
    return UserModel(name=TIER, base_url=server.url, model_id="smol", tier="M")


@pytest.fixture(scope="module")
def profiled(
    settings: Settings, llama_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A data directory holding the llama-server tier's profile, made by the real CLI."""
    data_dir = tmp_path_factory.mktemp("profiled")
    config = data_dir / "smallfirst.toml"
    config.write_text(
        f'models_dir = "{settings.models_dir}"\n'
        "hardware_counters = false\n"
        "[[models]]\n"
        f'name = "{TIER}"\nbase_url = "{llama_server.url}"\nmodel_id = "smol"\ntier = "M"\n'
    )
    command = [sys.executable, "-m", "smallfirst.cli", "models", "profile", TIER]
    command += ["--pid", str(llama_server.pid), "--repeats", "1"]
    command += ["--config", str(config), "--data-dir", str(data_dir)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{TIER}: " in done.stdout and "J/output token (estimated)" in done.stdout
    return data_dir


def test_the_llama_server_tier_is_profiled_over_http_by_its_process_cpu_time(
    profiled: Path, llama_server: LlamaServer
) -> None:
    profile = json.loads((profiled / "profiles.json").read_text())[TIER]
    assert profile["model"] == TIER and profile["method"] == "estimated"
    # a 135M model on one thread: above nothing, and nowhere near a kilojoule per answer
    assert 1e-5 < profile["j_per_input_token"] < profile["j_per_output_token"] < 10.0
    source = profile["source"]
    assert f"over HTTP against {llama_server.url}" in source
    assert f"server pid {llama_server.pid}'s CPU time" in source and "W/thread" in source


@pytest.fixture(scope="module")
def both_tiers(
    settings: Settings, llama_server: LlamaServer, profiled: Path
) -> Iterator[LiveServer]:
    """A gateway with SmolLM2 in-process and the llama-server tier, a router between them.

    The router is fitted on synthetic results (tests/routing/synthetic.py) whose XS model
    plays SmolLM2 and whose M model plays the llama-server tier: easy prompts go to the
    first, hard ones to the second (the plumbing is under test, not the router's quality).
    """
    names = {MODELS[0]: SMOL, MODELS[2]: TIER}
    results, prompts = synthetic(600, seed=3)
    results = [dataclasses.replace(r, model=names[r.model]) for r in results if r.model in names]
    ra.save(train(build_table(results, prompts), seed=0)[0], profiled)
    gateway = settings.model_copy(
        update={"data_dir": profiled, "models": (_tier(llama_server),), "hardware_counters": False}
    )
    with LiveServer(gateway) as server:
        yield server


def _ask(server: LiveServer, content: str) -> dict[str, Any]:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": content}], max_tokens=8
    )
    receipt: dict[str, Any] = (answer.model_extra or {})["smallfirst"]
    assert answer.model == receipt["model"] and answer.usage is not None
    assert receipt["tokens"]["completion"] == answer.usage.completion_tokens > 0
    return receipt


def test_auto_routes_across_the_in_process_and_llama_server_tiers(
    both_tiers: LiveServer, llama_server: LlamaServer, profiled: Path
) -> None:
    served_before = process_cpu_s(llama_server.pid)
    easy = _ask(both_tiers, EASY)
    after_easy = process_cpu_s(llama_server.pid)
    hard = _ask(both_tiers, HARD)
    # the in-process tier answered the easy prompt; llama-server worked only for the hard one
    assert easy["model"] == SMOL and hard["model"] == TIER
    assert after_easy - served_before < 0.05 < process_cpu_s(llama_server.pid) - after_easy
    for r in (easy, hard):
        assert r["policy"] == "auto" and r["route"]["strategy"] == "predictive"
        assert set(r["route"]["scores"]) == {SMOL, TIER}
    # the in-process tier: its own CPU time, metered while it generated
    assert easy["engine"] == "llama.cpp" and easy["energy"]["method"] == "estimated"
    assert easy["energy"]["scope"] == "process-cpu-time+ram" and easy["energy"]["energy_j"] > 0
    # the llama-server tier: joules from the profile that `models profile --pid` measured
    profile = json.loads((profiled / "profiles.json").read_text())[TIER]
    energy = hard["energy"]
    assert hard["engine"] == "remote" and energy["method"] == "profile"
    assert energy["scope"] == "per-token profile" and "over HTTP against" in energy["source"]
    tokens = hard["tokens"]
    assert energy["energy_j"] == pytest.approx(
        tokens["prompt"] * profile["j_per_input_token"]
        + tokens["completion"] * profile["j_per_output_token"]
    )
    # no price per token on one's own server: its joules cost what in-process ones do
    assert hard["cost"]["cost_usd"] > 0 and easy["cost"]["cost_usd"] > 0
    assert hard["cost"]["method"].startswith("no price configured: as self-hosted")
    stored = both_tiers.app.state.store.list(limit=10).receipts
    assert {r.id: r.model for r in stored} == {easy["receipt_id"]: SMOL, hard["receipt_id"]: TIER}
