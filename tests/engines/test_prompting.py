"""The prompts in-process models are given: which chat templates render tools (no generation;
each GGUF is opened for its vocabulary and metadata only)."""

from __future__ import annotations

from pathlib import Path

from smallfirst.catalog import BUILTIN_MODELS, Catalog
from smallfirst.settings import Settings, UserModel


def test_which_models_call_tools_agrees_with_their_templates(settings: Settings) -> None:
    """The catalog's ``tools`` is what each chat model's own template says: it renders a
    tools section (checked by rendering, on the GGUF's vocabulary only)."""
    import llama_cpp

    from smallfirst.engines.openmp import tame_openmp
    from smallfirst.engines.prompting import Prompter

    tame_openmp()
    catalog = Catalog(settings)
    checked = 0
    for spec in BUILTIN_MODELS:
        if not spec.chat or not catalog.is_installed(spec):
            continue
        llm = llama_cpp.Llama(str(catalog.file_path(spec)), vocab_only=True, verbose=False)
        assert Prompter(spec, llm._model, llm.metadata).calls_tools is spec.tools, spec.name
        checked += 1
    assert checked >= 2  # the test lane pulls SmolLM2 and Qwen-0.5B at least
    hosted = UserModel(name="hosted", base_url="http://127.0.0.1:1/v1")
    local = UserModel(name="mine", path=Path("/nonexistent.gguf"))
    catalog = Catalog(Settings(data_dir=settings.data_dir, models=(hosted, local)))
    # a remote model passes tools on; a local GGUF calls them only when its entry says so
    assert catalog.get("hosted").tools and not catalog.get("mine").tools
