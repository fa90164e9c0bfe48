"""A small real evaluation run: SmolLM2 on a few items of every benchmark, stored and resumed."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
from pathlib import Path

import pytest

from smallfirst.cli import main
from smallfirst.evals import report, runner
from smallfirst.evals.data import ensure_data
from smallfirst.settings import Settings
from smallfirst.store.eval_results import EvalStore
from tests.conftest import QWEN, SMOL, require_models

BENCHMARKS = ("humaneval", "mbpp", "gsm8k", "mmlu", "arc-challenge")


@pytest.fixture(scope="module")
def run_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("evaldata")})
    ensure_data(s, BENCHMARKS)
    return s


def small_plan(s: Settings, config: runner.RunConfig) -> dict[str, list]:  # type: ignore[type-arg]
    planned = runner.plan(s, config)
    # MMLU's limit is per subject: keep two subjects so the test stays small
    subjects = sorted({i.subject for i in planned["mmlu"]})[:2]
    planned["mmlu"] = [i for i in planned["mmlu"] if i.subject in subjects]
    # short budgets: this tests the plumbing, not the model
    return {b: [_short(i) for i in items] for b, items in planned.items()}


def _short(item):  # type: ignore[no-untyped-def]
    return dataclasses.replace(item, max_tokens=min(item.max_tokens, 48))


@dataclasses.dataclass(frozen=True)
class SmallRun:
    """Run "t" of a small plan, done in three sessions as an interrupted run would be."""

    planned: dict[str, list]  # type: ignore[type-arg]
    done: tuple[int, int, int]  # items answered by each session
    first_session: int  # items planned for the first session
    seen: list[runner.Progress]


@pytest.fixture(scope="module")
def small_run(run_settings: Settings) -> SmallRun:
    """Run "t" in the module's database; tests that read it ask for this, in any order."""
    config = runner.RunConfig(run_id="t", models=(SMOL,), benchmarks=BENCHMARKS, limit=2, seed=1)
    planned = small_plan(run_settings, config)
    store = EvalStore(run_settings.db_path)
    # first session: stop after part of the items (as a killed run would)
    first = {b: v[:1] for b, v in planned.items()}
    seen: list[runner.Progress] = []
    try:
        done = (
            asyncio.run(runner.run(run_settings, config, store, seen.append, first)),
            asyncio.run(runner.run(run_settings, config, store, seen.append, planned)),
            # a third session has nothing left to do
            asyncio.run(runner.run(run_settings, config, store, None, planned)),
        )
    finally:
        store.close()
    return SmallRun(planned, done, len(first), seen)


def test_small_run_stores_and_resumes(run_settings: Settings, small_run: SmallRun) -> None:
    total = sum(len(v) for v in small_run.planned.values())
    assert total == 2 + 2 + 2 + 4 + 2
    first = small_run.first_session
    assert small_run.done == (first, total - first, 0)
    seen = small_run.seen
    store = EvalStore(run_settings.db_path)
    results = store.results("t")
    assert len(results) == total
    for r in results:
        assert r.model == SMOL and r.output is not None and r.prompt_hash
        assert r.completion_tokens and r.completion_tokens <= 48 and r.prompt_tokens
        assert r.energy_j and r.energy_j > 0 and r.energy_method in ("measured", "estimated")
        assert r.cost_usd and r.co2_g and r.duration_s > 0
    assert {p.skipped for p in seen if p.last is None and p.benchmark == "gsm8k"} == {0, 1}

    rows = report.summarize(results)
    by = {(r.model, r.benchmark): r for r in rows}
    assert by[(SMOL, "humaneval")].n == 2 and by[(SMOL, "all (macro)")].n == total
    for r in rows:
        assert 0 <= r.accuracy <= 1
        if r.benchmark != "all (macro)":
            assert r.ci_low <= r.accuracy <= r.ci_high

    out = run_settings.data_dir / "export.jsonl.gz"
    assert store.export(out, "t") == total
    with gzip.open(out, "rt") as f:
        lines = [json.loads(x) for x in f]
    assert {x["benchmark"] for x in lines} == set(BENCHMARKS)
    store.close()


def test_report_cli_and_plot(
    run_settings: Settings, small_run: SmallRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "frontier.png"
    args = ["eval", "report", "--run", "t", "--data-dir", str(run_settings.data_dir)]
    assert main([*args, "--format", "json", "--plot", str(plot)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["benchmark"] == "all (macro)" for r in rows)
    assert plot.stat().st_size > 5000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([*args, "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "| model | benchmark |" in md
    # how each benchmark was asked and scored, and what the joules are
    assert "- mmlu: Hendrycks et al.'s 5-shot format" in md
    assert "not per-option log-probabilities" in md
    assert all(f"- {b}: " in md for b in BENCHMARKS)
    assert "Energy per item is estimated" in md or "Energy per item is measured" in md


def test_rescore_restores_verdicts_and_leaves_refusals(
    run_settings: Settings, small_run: SmallRun, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EvalStore(run_settings.db_path)
    stored = {(r.benchmark, r.item_id): r for r in store.results("t")}
    mmlu = next(r for (b, _), r in stored.items() if b == "mmlu")
    gsm = next(r for (b, _), r in stored.items() if b == "gsm8k")
    # a stale verdict (as a since-fixed extractor would have left) and a refusal
    store.add(dataclasses.replace(mmlu, correct=not mmlu.correct, extracted="Z", detail="old"))
    refusal = dataclasses.replace(gsm, completion_tokens=None, output="", detail="refused")
    store.add(refusal)
    done = runner.rescore(run_settings, store, "t", ["mmlu", "gsm8k"])
    assert (done.changed, done.flipped, done.skipped) == (1, 1, 1)
    after = {(r.benchmark, r.item_id): r for r in store.results("t")}
    assert after[("mmlu", mmlu.item_id)] == mmlu  # the verdict the scorer gives now
    assert after[("gsm8k", gsm.item_id)] == refusal  # never answered: left alone
    store.add(gsm)
    store.close()

    args = ["eval", "rescore", "--run", "t", "--data-dir", str(run_settings.data_dir)]
    assert main([*args, "--benchmarks", "arc-challenge"]) == 0
    assert "0 changed" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no results for run"):
        main(["eval", "rescore", "--run", "nope", "--data-dir", str(run_settings.data_dir)])


def test_every_model_answers_an_item_before_the_next(run_settings: Settings) -> None:
    # item-major order: a run stopped part-way leaves results paired across models
    require_models(run_settings, SMOL, QWEN)
    config = runner.RunConfig(run_id="pairs", models=(SMOL, QWEN), benchmarks=("gsm8k",), limit=2)
    planned = {
        b: [dataclasses_replace_tokens(i, 4) for i in v]
        for b, v in runner.plan(run_settings, config).items()
    }
    seen: list[runner.Progress] = []
    store = EvalStore(run_settings.db_path)
    assert asyncio.run(runner.run(run_settings, config, store, seen.append, planned)) == 4
    store.close()
    order = [(p.last.item_id, p.model) for p in seen if p.last is not None]
    first, second = (i.item_id for i in planned["gsm8k"])
    assert order == [(first, SMOL), (first, QWEN), (second, SMOL), (second, QWEN)]


def dataclasses_replace_tokens(item, max_tokens: int):  # type: ignore[no-untyped-def]
    return dataclasses.replace(item, max_tokens=max_tokens)


@pytest.mark.fast
def test_wilson_interval() -> None:
    low, high = report.wilson(7, 10)
    assert low == pytest.approx(0.3968, abs=1e-3) and high == pytest.approx(0.8922, abs=1e-3)
    assert report.wilson(0, 5)[0] == 0.0 and report.wilson(5, 5)[1] == 1.0


def test_item_too_long_for_the_model_is_a_refused_wrong_answer(run_settings: Settings) -> None:
    from smallfirst.evals.items import Item
    from smallfirst.types import Message

    item = Item(
        benchmark="jsonl:long",
        item_id="long/1",
        messages=(Message("user", "word " * (run_settings.n_ctx + 50)),),
        scorer="exact",
        reference="x",
        max_tokens=4,
    )
    config = runner.RunConfig(run_id="long", models=(SMOL,), benchmarks=("jsonl:long",))
    store = EvalStore(run_settings.db_path)
    assert asyncio.run(runner.run(run_settings, config, store, None, {"jsonl:long": [item]})) == 1
    (result,) = store.results("long")
    assert not result.correct and result.detail and "context_length_exceeded" in result.detail
    assert result.energy_j is None and result.energy_method == "unknown"
    store.close()


def test_a_prefilled_reply_is_continued_and_stored_whole(run_settings: Settings) -> None:
    # EvalPlus's chat convention: the reply starts with text written for the model
    from smallfirst.evals.items import Item
    from smallfirst.types import Message

    plain = Item(
        benchmark="jsonl:prefill",
        item_id="add",
        messages=(Message("user", "Write a Python function add(a, b) that returns a + b."),),
        scorer="code",
        reference="def add(a, b):\n    return a + b\n",
        tests="assert add(2, 3) == 5\n",
        entry_point="add",
        max_tokens=12,
    )
    prefilled = dataclasses.replace(
        plain, assistant_prefix="```python\ndef add(a, b):\n    return", stop=("\n```",)
    )
    # the hash of an item without a prefix is the one stored runs already have
    assert plain.prompt_hash() != prefilled.prompt_hash()
    config = runner.RunConfig(run_id="prefill", models=(SMOL,), benchmarks=("jsonl:prefill",))
    store = EvalStore(run_settings.db_path)
    items = {"jsonl:prefill": [plain, dataclasses.replace(prefilled, item_id="add-prefilled")]}
    assert asyncio.run(runner.run(run_settings, config, store, None, items)) == 2
    by_id = {r.item_id: r for r in store.results("prefill")}
    store.close()
    assert by_id["add-prefilled"].output.startswith(prefilled.assistant_prefix or "")
    assert "```" not in by_id["add-prefilled"].output[len("```python") :]  # stopped at the fence
    # the prefix is prompt, not completion: more prompt tokens than the plain item
    assert (by_id["add-prefilled"].prompt_tokens or 0) > (by_id["add"].prompt_tokens or 0)
    assert by_id["add-prefilled"].prompt_hash == prefilled.prompt_hash()
    # the prompt changed (the plain item is now asked pre-filled): only that item is asked
    # again, and its row replaced
    again = {"jsonl:prefill": [dataclasses.replace(prefilled, item_id=i) for i in by_id]}
    store = EvalStore(run_settings.db_path)
    assert asyncio.run(runner.run(run_settings, config, store, None, again)) == 1
    after = {r.item_id: r for r in store.results("prefill")}
    store.close()
    assert len(after) == 2 and after["add"].prompt_hash == prefilled.prompt_hash()
    assert after["add-prefilled"] == by_id["add-prefilled"]  # not asked again


def test_a_remote_endpoint_is_asked_without_the_prefill(
    run_settings: Settings, upstream: str
) -> None:
    # HumanEval and MBPP pre-fill the reply (EvalPlus); the OpenAI API cannot, so an
    # endpoint gets the user turn alone, as EvalPlus's OpenAI decoder sends it
    from smallfirst.evals.code_benchmarks import EVALPLUS_RESPONSE
    from smallfirst.evals.items import without_prefill
    from smallfirst.settings import UserModel

    remote = UserModel(name="remote:smol", base_url=upstream, model_id="smol-upstream")
    s = run_settings.model_copy(update={"models": (remote,)})
    config = runner.RunConfig(
        run_id="remote", models=("remote:smol",), benchmarks=("humaneval",), limit=2
    )
    planned = {b: [_short(i) for i in v] for b, v in runner.plan(s, config).items()}
    assert all(i.assistant_prefix == EVALPLUS_RESPONSE for i in planned["humaneval"])
    store = EvalStore(s.db_path)
    assert asyncio.run(runner.run(s, config, store, None, planned)) == 2
    results = {r.item_id: r for r in store.results("remote")}
    for item in planned["humaneval"]:
        r = results[item.item_id]
        assert r.prompt_hash == without_prefill(item).prompt_hash()
        assert r.prompt_hash != item.prompt_hash()
        assert not r.output.startswith(EVALPLUS_RESPONSE) and r.completion_tokens
    # resuming sees them done (as asked), and rescoring recognises their prompt
    assert asyncio.run(runner.run(s, config, store, None, planned)) == 0
    assert runner.rescore(s, store, "remote").skipped == 0
    store.close()
