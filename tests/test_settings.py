from pathlib import Path

import pytest
from pydantic import ValidationError

from smallfirst.errors import ConfigError
from smallfirst.settings import Settings, UserModel, load_settings

pytestmark = pytest.mark.fast


def test_precedence_file_then_env_then_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "smallfirst.toml"
    config.write_text('port = 9001\nhost = "0.0.0.0"\nn_ctx = 1024\n')
    monkeypatch.setenv("SMALLFIRST_PORT", "9002")
    s = load_settings(config, n_ctx=None)  # a flag not given does not mask the file
    assert (s.host, s.port, s.n_ctx) == ("0.0.0.0", 9002, 1024)
    assert load_settings(config, port=9003).port == 9003


def test_user_models_from_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        """
[[models]]
name = "mini"
base_url = "https://api.example.com/v1"
model_id = "gpt-4o-mini"
api_key_env = "EXAMPLE_KEY"
context_length = 128000
price_input_per_mtok_usd = 0.15
price_output_per_mtok_usd = 0.60

[[models]]
name = "mine"
path = "/models/mine.gguf"
"""
    )
    s = load_settings(config)
    assert [m.name for m in s.models] == ["mini", "mine"]
    assert s.models[0].price_output_per_mtok_usd == 0.60


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("port = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")


def test_invalid_value_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('port = "eighty"\n')
    with pytest.raises(ConfigError, match="port") as err:
        load_settings(config)
    assert isinstance(err.value.__cause__, ValidationError)  # pydantic's message, kept whole
    monkeypatch.setenv("SMALLFIRST_PUE", "0.5")
    with pytest.raises(ConfigError, match="pue"):
        load_settings()


def test_user_model_needs_exactly_one_source() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        UserModel(name="x")
    with pytest.raises(ValidationError, match="exactly one"):
        UserModel(name="x", path=Path("a.gguf"), base_url="http://h/v1")


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(not_a_setting=1)  # type: ignore[call-arg]


def test_readme_config_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "smallfirst.toml"
    config.write_text(block)
    s = load_settings(config)
    assert s.reference_model == "gpt-4o" and s.prices["gpt-4o"].output_per_mtok_usd == 10.0
    assert {m.name for m in s.models} == {"my-llama", "gpt-4o-mini"}
