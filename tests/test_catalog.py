from pathlib import Path

import pytest

from smallfirst.catalog import BUILTIN_MODELS, LADDER, Catalog, UnknownModelError
from smallfirst.settings import Settings, UserModel

pytestmark = pytest.mark.fast


def test_builtin_entries_are_complete() -> None:
    for spec in BUILTIN_MODELS:
        assert spec.sha256 and len(spec.sha256) == 64
        assert spec.parts and spec.size_bytes and spec.file_name
        assert spec.license and spec.source and spec.context_length > 0
        assert all(p.requirement.count("==") == 1 for p in spec.parts)
    tiers = {s.name: s.tier for s in BUILTIN_MODELS}
    assert [tiers[n] for n in LADDER] == ["XS", "S", "M"]
    assert not next(s for s in BUILTIN_MODELS if s.tier == "base").chat


def test_user_models_join_and_override(tmp_path: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    settings = Settings(
        data_dir=tmp_path,
        models=(
            UserModel(name="mine", path=gguf, tier="L"),
            UserModel(name="hosted", base_url="http://127.0.0.1:1/v1/", model_id="up"),
        ),
    )
    catalog = Catalog(settings)
    mine, hosted = catalog.get("mine"), catalog.get("hosted")
    assert catalog.file_path(mine) == gguf and catalog.is_installed(mine)
    assert hosted.remote is not None and hosted.remote.base_url == "http://127.0.0.1:1/v1"
    assert hosted.remote.model_id == "up" and catalog.is_installed(hosted)
    assert not catalog.is_installed(catalog.get("smollm2-135m-instruct"))
    with pytest.raises(UnknownModelError):
        catalog.get("nope")


def test_wrong_size_is_not_installed(tmp_path: Path) -> None:
    catalog = Catalog(Settings(data_dir=tmp_path))
    spec = catalog.get("smollm2-135m-instruct")
    path = catalog.file_path(spec)
    assert path is not None
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated")
    assert not catalog.is_installed(spec)


def test_which_models_embed(tmp_path: Path) -> None:
    # every built-in GGUF embeds in llama.cpp's embedding mode; the default is one of them
    assert all(s.embeds for s in BUILTIN_MODELS)
    assert Settings().embedding_model in {s.name for s in BUILTIN_MODELS}
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    catalog = Catalog(
        Settings(
            data_dir=tmp_path,
            models=(
                UserModel(name="mine", path=gguf, embeds=True),
                UserModel(name="hosted", base_url="http://127.0.0.1:1/v1"),
            ),
        )
    )
    assert catalog.get("mine").embeds and not catalog.get("hosted").embeds
    # embeddings run in-process: a remote model cannot be declared to embed
    with pytest.raises(ValueError, match="only a local model"):
        UserModel(name="up", base_url="http://127.0.0.1:1/v1", embeds=True)
