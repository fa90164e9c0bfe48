"""``smallfirst keys`` and ``serve``'s refusal to bind publicly without a key, through the
real command line on a fresh data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smallfirst.cli import main
from smallfirst.store.keys import KeyStore

pytestmark = pytest.mark.fast


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_keys_create_prints_the_secret_once_and_show_prints_budgets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = ("--data-dir", str(tmp_path))
    flags = ["--name", "team", "--budget-wh", "2.5", "--window", "1d", "--rpm", "60"]
    flags += ["--models", "smollm2-*,qwen*", "--expires", "30d", "--json"]
    made = json.loads(run(capsys, "keys", "create", *d, *flags))
    secret = made["secret"]
    assert secret.startswith("sf-") and made["models"] == ["smollm2-*", "qwen*"]
    store = KeyStore(tmp_path / "smallfirst.db", tmp_path)
    assert store.authenticate(secret).name == "team"
    store.close()
    shown = run(capsys, "keys", "show", "team", *d)
    assert "Wh: budget 2.5  spent 0  reserved 0  left 2.5" in shown
    assert "window: 1d (resets 20" in shown
    listed = run(capsys, "keys", "list", *d, "--json")
    assert secret not in listed and secret not in shown
    rotated = json.loads(run(capsys, "keys", "rotate", "team", *d, "--json"))["secret"]
    assert rotated != secret
    assert "revoked" in run(capsys, "keys", "revoke", made["id"], *d)
    with pytest.raises(SystemExit, match="already exists"):
        main(["keys", "create", *d, "--name", "team"])


def test_serve_refuses_a_public_host_without_a_key_and_says_why(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--allow-anonymous"):
        main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)])
