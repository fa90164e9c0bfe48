"""Fallbacks onto a real local model (SmolLM2): from a dead upstream and from a broken file.

The dead upstream is a remote model whose port nothing listens on; the broken file is a
copy of SmolLM2's GGUF with its version field's bytes flipped, registered as a user model,
which llama.cpp refuses to load. Both name SmolLM2 as their fallback: the first through its
``[[models]]`` ``fallbacks``, the second through the top-level ``fallbacks`` table, which
also gives ``auto`` (no router here: the default model) its fallbacks.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from smallfirst.catalog import Catalog
from smallfirst.settings import Settings, UserModel
from tests.conftest import SMOL, LiveServer, free_port

DEAD = "dead-remote"
BROKEN = "smol-broken"


def broken_copy(source: Path, target: Path) -> Path:
    shutil.copyfile(source, target)
    with target.open("r+b") as f:
        f.seek(4)  # after the magic: the format version
        version = f.read(4)
        f.seek(4)
        f.write(bytes(b ^ 0xFF for b in version))
    return target


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    catalog = Catalog(settings)
    source = catalog.file_path(catalog.get(SMOL))
    assert source is not None
    broken = broken_copy(source, tmp_path_factory.mktemp("broken") / "broken.gguf")
    models = (
        UserModel(
            name=DEAD,
            base_url=f"http://127.0.0.1:{free_port()}/v1",  # a closed port
            model_id="nothing",
            fallbacks=(SMOL,),
        ),
        UserModel(name=BROKEN, tier="XS", path=broken, context_length=2048),
    )
    test_settings = settings.model_copy(
        update={
            "data_dir": tmp_path_factory.mktemp("data"),
            "models": models,
            "fallbacks": {BROKEN: (SMOL,)},
            "default_model": BROKEN,
            "remote_retries": 1,
            "remote_retry_backoff_s": 0.05,
        }
    )
    with LiveServer(test_settings) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def attempts(receipt: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(a["model"], a["error"] and a["error"]["code"]) for a in receipt["route"]["attempts"]]


MESSAGES: Any = [{"role": "user", "content": "Say hello."}]


def test_a_dead_remote_upstream_falls_back_to_the_local_model(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model=DEAD, messages=MESSAGES, max_tokens=8)
    assert completion.model == SMOL
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    receipt = completion.model_extra["smallfirst"]  # type: ignore[index]
    assert receipt["model"] == SMOL and receipt["status"] == "ok"
    assert attempts(receipt) == [(DEAD, "upstream_unavailable"), (SMOL, None)]
    assert "unreachable" in receipt["route"]["attempts"][0]["error"]["message"]


def test_a_local_model_that_cannot_load_falls_back_streaming(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model=BROKEN, messages=MESSAGES, max_tokens=8, stream=True)
    )
    assert {c.model for c in chunks} == {SMOL}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    receipt = chunks[-1].model_extra["smallfirst"]  # type: ignore[index]
    assert receipt["model"] == SMOL
    assert attempts(receipt) == [(BROKEN, "engine_error"), (SMOL, None)]
    assert "could not be loaded" in receipt["route"]["attempts"][0]["error"]["message"]


def test_auto_without_a_router_uses_the_default_models_fallbacks(
    client: openai.OpenAI,
) -> None:
    completion = client.chat.completions.create(model="auto", messages=MESSAGES, max_tokens=8)
    assert completion.model == SMOL
    route = completion.model_extra["smallfirst"]["route"]  # type: ignore[index]
    assert route["strategy"] == "default"
    assert [a["model"] for a in route["attempts"]] == [BROKEN, SMOL]
