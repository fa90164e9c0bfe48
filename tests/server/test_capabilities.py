"""What a request needs of its model (no model runs): tools, a chat template, a context that
holds the prompt and the answer; a choice that lacks one is a 400 naming the models that
have it, and its fallbacks keep only the models that can serve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smallfirst.catalog import Catalog
from smallfirst.engines.base import GenerationRequest, Sampling, Tools
from smallfirst.errors import UnsupportedError
from smallfirst.server import capabilities
from smallfirst.server.choosing import Choice
from smallfirst.settings import Settings
from smallfirst.types import Message

pytestmark = pytest.mark.fast

SMOL, QWEN, GEMMA = "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "gemma-3-270m"
TOOLS = Tools(json.dumps([{"type": "function", "function": {"name": "f"}}]))


def chat(
    text: str = "hi", *, tools: Tools | None = None, max_tokens: int = 10
) -> GenerationRequest:
    return GenerationRequest(
        Sampling(max_tokens=max_tokens), messages=(Message("user", text),), tools=tools
    )


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(Settings(data_dir=tmp_path))


def test_what_each_model_lacks(catalog: Catalog) -> None:
    smol, qwen, gemma = (catalog.get(m) for m in (SMOL, QWEN, GEMMA))
    assert capabilities.missing(smol, chat(tools=TOOLS)) == "does not call tools"
    assert capabilities.missing(qwen, chat(tools=TOOLS)) is None
    # tool_choice none asks nothing of the model
    assert capabilities.missing(smol, chat(tools=Tools(TOOLS.definitions, choice="none"))) is None
    assert capabilities.missing(gemma, chat()) == "a base model (completions only)"
    long = chat("word " * 40_000, max_tokens=100)
    assert capabilities.estimated_tokens(long) > smol.context_length
    assert (capabilities.missing(smol, long) or "").startswith("context: about ")
    # a named model's context is its engine's to judge (exactly, with its tokenizer)
    assert capabilities.missing(smol, long, named=True) is None


def test_a_choice_that_cannot_serve_is_refused_naming_those_that_can(catalog: Catalog) -> None:
    with pytest.raises(UnsupportedError) as err:
        capabilities.check(Choice(SMOL), catalog, chat(tools=TOOLS), [SMOL, QWEN])
    assert err.value.param == "tools"
    assert SMOL in str(err.value) and f"installed models that can: {QWEN}" in str(err.value)
    # auto, when nothing installed can: said so
    with pytest.raises(UnsupportedError, match="no installed model can serve it"):
        capabilities.check(Choice(SMOL, policy="auto"), catalog, chat(tools=TOOLS), [SMOL])
    # fallbacks that cannot serve are dropped, the others kept in order
    choice = Choice(QWEN, fallbacks=(SMOL, "qwen2.5-coder-1.5b-instruct"))
    kept = capabilities.check(choice, catalog, chat(tools=TOOLS), [SMOL, QWEN])
    assert kept.fallbacks == ("qwen2.5-coder-1.5b-instruct",)
    assert capabilities.check(choice, catalog, chat(), [SMOL, QWEN]) is choice


def test_excluders_combine(catalog: Catalog) -> None:
    needs = capabilities.excluder(catalog, chat(tools=TOOLS))
    assert needs(SMOL) == "does not call tools" and needs(QWEN) is None
    assert needs("not-a-model") is None  # the pool answers for unknown names
    keys = capabilities.both(lambda m: "not among the key's models" if m == QWEN else None, needs)
    assert keys(QWEN) == "not among the key's models" and keys(SMOL) == "does not call tools"
    assert capabilities.both(None, needs) is needs


def test_auto_without_a_router_passes_over_a_default_that_cannot(tmp_path: Path) -> None:
    from smallfirst.engines.pool import EnginePool
    from smallfirst.server.choosing import Chooser
    from tests.conftest import models_data_dir, require_models

    settings = Settings(
        data_dir=tmp_path,
        models_dir=models_data_dir() / "models",
        default_model=SMOL,
        default_router=False,
    )
    require_models(settings, SMOL, QWEN)  # installed: no model is loaded
    catalog = Catalog(settings)
    pool = EnginePool(catalog, settings)
    chooser = Chooser(settings, pool)
    gen = chat(tools=TOOLS)
    choice = chooser.choose("auto", gen.messages or (), capabilities.excluder(catalog, gen))
    assert choice.model != SMOL and choice.model in pool.available()
    assert choice.route is not None and choice.route["excluded"] == {SMOL: "does not call tools"}
    plain = chooser.choose("auto", gen.messages or (), capabilities.excluder(catalog, chat()))
    assert plain.model == SMOL and "excluded" not in (plain.route or {})
