"""`smallfirst router fit` and `router eval` end to end, on synthetic results in a real store."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from smallfirst.cli import main
from smallfirst.routing import artifact as ra
from smallfirst.store.eval_results import EvalStore
from tests.routing.synthetic import BENCHMARKS, synthetic, write_jsonl_benchmark


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    """A data directory whose database holds synthetic results on jsonl benchmarks."""
    results, prompts = synthetic(240, seed=2)
    renamed: dict[str, str] = {}
    for benchmark in BENCHMARKS:
        path = tmp_path / f"{benchmark}.jsonl"
        write_jsonl_benchmark(path, prompts, benchmark)
        renamed[benchmark] = f"jsonl:{path}"
    store = EvalStore(tmp_path / "smallfirst.db")
    store.start_run("synth", {"synthetic": True})
    for r in results:
        store.add(dataclasses.replace(r, benchmark=renamed[r.benchmark]))
    store.close()
    return tmp_path


def test_fit_then_eval(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["router", "fit", "--data-dir", str(data_dir), "--folds", "3"]) == 0
    out = capsys.readouterr().out
    assert "routing table: 240 items × 3 models" in out
    assert "predictive" in out and "router saved to" in out
    fitted = ra.load_latest(data_dir)
    assert fitted is not None and fitted.training_run_ids == ("synth",)

    report = data_dir / "report"
    assert main(["router", "eval", "--data-dir", str(data_dir), "--out", str(report)]) == 0
    assert (report / "routing.png").stat().st_size > 10_000
    md = (report / "report.md").read_text()
    assert "APGR" in md and "oracle" in md and "routing.png" in md
    assert "## Summary (energy axis)" in md and "APGR (energy) of the best strategy" in md
    assert "## Ceilings" in md and "oracle-as-reference" in md and "it captures" in md
    assert "## `auto` (predictive, quality 0.95) per benchmark" in md
    data = json.loads((report / "report.json").read_text())
    assert data["n_items"] == len(fitted.heldout_keys)
    assert {s["name"] for s in data["strategies"]} >= {"predictive", "cascade", "random"}

    capsys.readouterr()
    assert main(["router", "eval", "--data-dir", str(data_dir), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_items"] == data["n_items"]


def test_fit_without_results_or_router_says_so(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no evaluation results"):
        main(["router", "fit", "--data-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="no router fitted"):
        main(["router", "eval", "--data-dir", str(tmp_path)])


def test_fit_and_eval_from_an_exported_file(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # How the packaged default router is made: from the committed export, no database.
    store = EvalStore(data_dir / "smallfirst.db")
    export = tmp_path / "results.jsonl.gz"
    assert store.export(export, "synth") == 240 * 3
    store.close()
    empty = tmp_path / "empty"  # a data directory with no database and no router
    router = tmp_path / "router.json.gz"
    fit = ["router", "fit", "--data-dir", str(empty), "--results", str(export)]
    assert main([*fit, "--folds", "3", "--save-as", str(router)]) == 0
    assert f"router saved to {router}" in capsys.readouterr().out
    assert ra.load_latest(empty) is None  # --save-as writes only where it is told
    fitted = ra.load(router)
    assert fitted.training_run_ids == ("synth",)

    ev = ["router", "eval", "--data-dir", str(empty), "--router", str(router)]
    assert main([*ev, "--results", str(export), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_items"] == len(fitted.heldout_keys)


def test_unreadable_results_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(SystemExit, match="cannot read results"):
        main(["router", "fit", "--data-dir", str(tmp_path), "--results", str(bad)])


def test_least_energy_at_a_quality_bar() -> None:
    import numpy as np

    from smallfirst.routing.training.evaluation import Curve
    from smallfirst.routing.training.report import least_energy_at

    curve = Curve(
        "x",
        "router",
        accuracy=np.array([0.2, 0.5, 0.7, 0.69]),
        fractions={"energy": np.array([0.1, 0.4, 0.8, 0.6]), "cost": None},
        metrics={"energy": None, "cost": None},
    )
    assert least_energy_at(curve, 0.5) == 0.4
    assert least_energy_at(curve, 0.7) == 0.8  # 0.69 at 0.6 falls short of the bar
    assert least_energy_at(curve, 0.9) is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--heldout", "1.5"], "held-out fraction must be in"),
        (["--folds", "1"], "at least 2 folds"),
        (["--l2", "0"], "l2 penalty must be positive"),
        (["--models", "tiny-xs"], "at least two models"),
        (["--models", "tiny-xs,nobody"], "no item has a result for every model"),
    ],
)
def test_fit_settings_it_cannot_train_with_are_clear_errors(
    data_dir: Path, flags: list[str], message: str
) -> None:
    with pytest.raises(SystemExit, match=message):
        main(["router", "fit", "--data-dir", str(data_dir), *flags])
