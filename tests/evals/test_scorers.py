"""Scorers accept known-correct answers and reject broken ones, on real benchmark data.

The code fixtures are verbatim rows of the pinned data wheels (see each file's "source"):
HumanEval/0, /2, /4 and MBPP 11 and 367 (the one with test_setup_code).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from smallfirst.errors import EvaluationError
from smallfirst.evals.items import Item, ScorerName
from smallfirst.evals.sandbox import Limits
from smallfirst.evals.scorers import extract_code, extract_letter, sanitize, score
from smallfirst.types import Message

FIXTURES = Path(__file__).parent / "fixtures"
LIMITS = Limits(timeout_s=10.0, cpu_s=5, memory_mb=512)

# One deliberate bug per problem: (the canonical text, what replaces it).
HUMANEVAL_BUGS = {
    "HumanEval/0": ("distance < threshold", "distance > threshold"),  # wrong comparison
    "HumanEval/2": ("return number % 1.0", "return number // 1.0"),  # wrong return
    "HumanEval/4": ("/ len(numbers)\n", "/ (len(numbers) + 1)\n"),  # off by one
}
MBPP_BUGS = {
    11: ("return s ", "return s[1:] "),  # drops a character
    367: ("<= 1", "<= 2"),  # off by one in the balance test
}
MBPP_ENTRY_POINTS = {11: "remove_Occ", 367: "is_tree_balanced"}


def _problems(name: str) -> list[dict[str, Any]]:
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    problems: list[dict[str, Any]] = data["problems"]
    return problems


def _item(scorer: ScorerName, reference: str, **fields: Any) -> Item:
    return Item(
        benchmark="test",
        item_id="test/0",
        messages=(Message(role="user", content="question"),),
        scorer=scorer,
        reference=reference,
        **fields,
    )


def _humaneval_item(row: dict[str, Any]) -> Item:
    # As the loader builds it: tests define check(candidate), the prompt is the signature.
    return Item(
        benchmark="humaneval",
        item_id=row["task_id"],
        messages=(Message(role="user", content=row["prompt"]),),
        scorer="code",
        reference=row["prompt"] + row["canonical_solution"],
        tests=row["test"],
        entry_point=row["entry_point"],
        code_prompt=row["prompt"],
    )


def _mbpp_item(row: dict[str, Any]) -> Item:
    # As the loader builds it: setup code, then the bare asserts.
    setup = row["test_setup_code"]
    asserts = row["test_list"]
    return Item(
        benchmark="mbpp",
        item_id=f"mbpp/{row['task_id']}",
        messages=(Message(role="user", content=row["text"]),),
        scorer="code",
        reference=row["code"],
        tests="\n".join([setup, *asserts] if setup else asserts) + "\n",
        entry_point=MBPP_ENTRY_POINTS[row["task_id"]],
    )


def _chat(code: str) -> str:
    return (
        "Sure! Here is a solution:\n\n```python\n"
        + code.rstrip()
        + "\n```\n\nIt walks the input once; let me know if you need anything else."
    )


def _break(text: str, bug: tuple[str, str]) -> str:
    assert bug[0] in text, "the bug must apply to the canonical code"
    return text.replace(bug[0], bug[1])


HUMANEVAL = _problems("humaneval_sample.json")
MBPP = _problems("mbpp_sample.json")


# --- code: HumanEval ----------------------------------------------------------------------


@pytest.mark.parametrize("row", HUMANEVAL, ids=lambda r: r["task_id"])
def test_humaneval_accepts_canonical_in_a_chat_fence(row: dict[str, Any]) -> None:
    item = _humaneval_item(row)
    result = score(item, _chat(row["prompt"] + row["canonical_solution"]), LIMITS)
    assert result.correct, result.detail
    assert result.extracted is not None
    assert f"def {row['entry_point']}(" in result.extracted
    assert "check(" not in result.extracted  # the program's code part, without the tests


@pytest.mark.parametrize("row", HUMANEVAL, ids=lambda r: r["task_id"])
def test_humaneval_accepts_a_prefilled_reply_stopped_at_the_fence(row: dict[str, Any]) -> None:
    # what the runner stores for a pre-filled item: the prefix, then the code, the closing
    # fence never generated (the stop sequence)
    from smallfirst.evals.code_benchmarks import EVALPLUS_RESPONSE

    item = _humaneval_item(row)
    good = EVALPLUS_RESPONSE + row["prompt"] + row["canonical_solution"].rstrip()
    assert score(item, good, LIMITS).correct
    broken = _break(row["canonical_solution"], HUMANEVAL_BUGS[row["task_id"]])
    assert not score(item, EVALPLUS_RESPONSE + row["prompt"] + broken, LIMITS).correct


@pytest.mark.parametrize("row", HUMANEVAL, ids=lambda r: r["task_id"])
def test_humaneval_accepts_a_bare_body_continuation(row: dict[str, Any]) -> None:
    item = _humaneval_item(row)
    result = score(item, row["canonical_solution"], LIMITS)
    assert result.correct, result.detail
    assert result.extracted is not None
    assert result.extracted.startswith(row["prompt"])


@pytest.mark.parametrize("row", HUMANEVAL, ids=lambda r: r["task_id"])
def test_humaneval_rejects_a_broken_solution(row: dict[str, Any]) -> None:
    item = _humaneval_item(row)
    broken = _break(row["canonical_solution"], HUMANEVAL_BUGS[row["task_id"]])
    for output in (_chat(row["prompt"] + broken), broken):
        result = score(item, output, LIMITS)
        assert not result.correct
        assert result.detail is not None and result.detail.startswith("failed: AssertionError")


@pytest.mark.fast
def test_humaneval_function_without_the_prompts_import() -> None:
    row = HUMANEVAL[0]  # has_close_elements(numbers: List[float], ...)
    item = _humaneval_item(row)
    solution = (row["prompt"] + row["canonical_solution"]).replace("from typing import List\n", "")
    result = score(item, _chat(solution), LIMITS)
    assert result.correct, result.detail
    assert result.extracted is not None
    assert result.extracted.startswith("from typing import List\n")


@pytest.mark.fast
def test_humaneval_picks_the_fence_that_defines_the_function() -> None:
    row = HUMANEVAL[1]  # truncate_number
    item = _humaneval_item(row)
    output = (
        "Usage first:\n```python\nprint(truncate_number(3.5))\n```\n"
        "The implementation:\n```python\n"
        + row["prompt"]
        + row["canonical_solution"]
        + "```\nOutput:\n```\n0.5\n```"
    )
    result = score(item, output, LIMITS)
    assert result.correct, result.detail


def test_code_demo_block_does_not_run_but_early_exit_fails() -> None:
    row = HUMANEVAL[1]
    item = _humaneval_item(row)
    solution = row["prompt"] + row["canonical_solution"]
    # A demo reading stdin (closed in the sandbox) would fail if it ran; harnesses exec()
    # the program, so it does not run there either.
    demo = solution + "\nif __name__ == '__main__':\n    print(truncate_number(float(input())))\n"
    assert score(item, _chat(demo), LIMITS).correct
    # Exiting 0 before the tests finish (here: when the tests call it) must not count as
    # passing them. (A top-level exit call is dropped with the other top-level statements.)
    for exit_call in ("import sys; sys.exit(0)", "import os; os._exit(0)"):
        body = f"def {row['entry_point']}(number):\n    {exit_call}\n"
        result = score(item, _chat(body), LIMITS)
        assert not result.correct
        assert result.detail == "exited before the tests finished"


def test_code_drops_the_models_own_top_level_tests() -> None:
    # Qwen-0.5B on HumanEval/11: a right function, then its own test with a wrong expected
    # value, called at top level. EvalPlus sanitizes that away before scoring; so do we.
    row = HUMANEVAL[1]
    item = _humaneval_item(row)
    solution = row["prompt"] + row["canonical_solution"]
    own_test = (
        f"\n\ndef test_it():\n    assert {row['entry_point']}(3.5) == 0.7, 'wrong'\n\n"
        "test_it()\nprint('demo')\n"
    )
    result = score(item, _chat(solution + own_test), LIMITS)
    assert result.correct, result.detail
    assert result.extracted is not None and "test_it" not in result.extracted
    broken = solution.replace("return number % 1.0", "return number")
    assert broken != solution and not score(item, _chat(broken + own_test), LIMITS).correct


@pytest.mark.fast
def test_sanitize_keeps_what_the_entry_point_reaches() -> None:
    code = (
        "import math\nK = 3\nJUNK = 1\n\n"
        "def helper(x):\n    return x * K\n\n"
        "def unused():\n    return JUNK\n\n"
        "@functools.cache\ndef f(a):\n    return helper(math.floor(a))\n\n"
        "print(f(2))\nfor i in range(3):\n    f(i)\n"
    )
    kept = sanitize(code, "f")
    assert kept == (
        "import math\nK = 3\n\ndef helper(x):\n    return x * K\n\n\n"
        "@functools.cache\ndef f(a):\n    return helper(math.floor(a))"
    )
    assert sanitize("def g(:\n", "g") == "def g(:\n"  # unparsable: unchanged
    assert sanitize("x = 1\nprint(x)\n", "f") == "x = 1\nprint(x)\n"  # no entry point


def test_code_timeout_is_reported() -> None:
    item = _humaneval_item(HUMANEVAL[1])
    output = "```python\ndef truncate_number(number):\n    while True:\n        pass\n```"
    result = score(item, output, Limits(timeout_s=1.0))
    assert not result.correct
    assert result.detail == "timeout"


# --- code: MBPP ---------------------------------------------------------------------------


@pytest.mark.parametrize("row", MBPP, ids=lambda r: f"mbpp/{r['task_id']}")
def test_mbpp_accepts_canonical(row: dict[str, Any]) -> None:
    item = _mbpp_item(row)
    for output in (_chat(row["code"]), row["code"]):  # fenced in chat, and raw
        result = score(item, output, LIMITS)
        assert result.correct, result.detail


@pytest.mark.parametrize("row", MBPP, ids=lambda r: f"mbpp/{r['task_id']}")
def test_mbpp_rejects_a_broken_solution(row: dict[str, Any]) -> None:
    item = _mbpp_item(row)
    result = score(item, _chat(_break(row["code"], MBPP_BUGS[row["task_id"]])), LIMITS)
    assert not result.correct
    assert result.detail is not None and result.detail.startswith("failed: AssertionError")


def test_mbpp_missing_function_fails() -> None:
    item = _mbpp_item(MBPP[0])
    prose = score(item, "I am not sure how to do this.", LIMITS)
    assert (prose.correct, prose.detail) == (False, "failed: SyntaxError: invalid syntax")
    other = score(item, "```python\ndef remove(s, ch):\n    return s\n```", LIMITS)
    assert not other.correct
    assert other.detail == "failed: NameError: name 'remove_Occ' is not defined"


@pytest.mark.fast
def test_extract_code_prefers_fences_and_keeps_indentation() -> None:
    assert extract_code("```py\ndef f():\n    return 1\n```", "f", None) == (
        "def f():\n    return 1\n"
    )
    # Unclosed fence (the model ran out of tokens): everything after it.
    assert extract_code("Here:\n```python\ndef f():\n    return 1", "f", None) == (
        "def f():\n    return 1\n"
    )
    # No definition anywhere: the longest block, then the prompt in front of it.
    prompt = "def f():\n"
    assert extract_code("\n\n    return 1\n", "f", prompt) == "def f():\n    return 1\n"
    assert extract_code("```\n    x = 1\n    return x\n```\n```\nx\n```", "f", prompt) == (
        "def f():\n    x = 1\n    return x\n"
    )


# --- math ---------------------------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.parametrize(
    ("output", "reference", "correct"),
    [
        ("Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips.\n#### 72", "72", True),
        ("She sold 48 + 24 = 72 clips altogether. The answer is 72.", "72", True),
        ("The answer is $1,000.", "1,000", True),
        ("The answer is 1000", "1,000", True),
        ("So the total is $18.00.", "18", True),
        ("The final answer is \\boxed{18}.", "18", True),
        ("Final Answer: -3.5", "-3.5", True),
        ("The temperature drops to −3.5 degrees.", "-3.5", True),
        ("The answer is 18. Check: 9 + 9 = 18, and 2 * 9 = 18 too, so 36 is wrong.", "18", True),
        ("Step 1: 5 * 3 = 15\nStep 2: 15 - 3 = 12", "12", True),
        ("He earns 10 per hour for 8 hours, which is 80 dollars.", "80", True),
        ("The answer is 71.", "72", False),
        ("#### 7.2", "72", False),
        ("She has 72 clips in total. The answer is 73", "72", False),
        ("\\boxed{18} is wrong, the answer is 19", "18", False),
        ("I don't know.", "72", False),
        ("- 5 apples\n- 3 pears", "-3", False),  # markdown bullets, not minus signs
    ],
)
def test_math(output: str, reference: str, correct: bool) -> None:
    result = score(_item("math", reference), output)
    assert result.correct is correct, result


@pytest.mark.fast
def test_math_reports_what_it_read() -> None:
    result = score(_item("math", "18"), "The answer is 18.00.")
    assert (result.correct, result.extracted) == (True, "18")
    missing = score(_item("math", "18"), "no idea")
    assert (missing.correct, missing.extracted, missing.detail) == (False, None, "no answer found")


# --- choice -------------------------------------------------------------------------------

CHOICES = ("Paris", "London", "Rome", "Berlin")


@pytest.mark.fast
@pytest.mark.parametrize(
    ("output", "letter"),
    [
        ("B", "B"),
        ("B.", "B"),
        ("(B)", "B"),
        ("B) London", "B"),
        ("B: London", "B"),
        ("**B**", "B"),
        ("**B) London**", "B"),
        ("Answer: B", "B"),
        ("answer: (b)", "B"),
        ("The answer is (C).", "C"),
        ("The correct answer is D because Berlin is the capital.", "D"),
        ("The answer to this question is B.", "B"),
        ("The correct option is (B)", "B"),
        ("\\boxed{D}", "D"),
        ("Option A is wrong. Option C is correct.", "C"),
        ("It is A.", "A"),
        ("A. Paris", "A"),
        ("A", "A"),
        ("Let me think step by step.\nLondon is a capital.\nC", "C"),
        ("B\n\nExplanation: London is the capital of the United Kingdom.", "B"),
        ("**A) Paris** is in France, **B) London** is in England.\n\nAnswer: A", "A"),
        ("Berlin", "D"),
        ("  rome. ", "C"),
        # The article "A" is not an answer:
        ("A city on the Seine. The answer is B.", "B"),
        ("A good way to see it: the answer is (D)", "D"),
        ("The answer is a European capital.", None),
        ("A cell divides by mitosis.", None),
        ("Answer: A capital city.", None),
        ("I cannot tell.", None),
        ("Paris or London", None),
        # one option restated on its own line after a preamble (Qwen-1.5B on ARC)
        ("The best answer is:\n\nC. Berlin\n\nbecause it is the capital.", "C"),
        ("Looking at the options:\n**B) London**", "B"),
        ("Options:\nA. Paris\nB. London\nLet me think", None),  # walks through two
        ("So:\nB. Rome", None),  # the text is not option B's
    ],
)
def test_extract_letter(output: str, letter: str | None) -> None:
    assert extract_letter(output, "ABCD", CHOICES) == letter


@pytest.mark.fast
def test_choice_scoring() -> None:
    item = _item("choice", "B", choices=CHOICES)
    assert score(item, "The answer is B.") == score(item, "London")
    assert score(item, "Answer: B").correct
    wrong = score(item, "Answer: C")
    assert (wrong.correct, wrong.extracted, wrong.detail) == (False, "C", "expected B")
    assert score(item, "A city, I think").detail == "no answer found"
    # Five options (ARC): E is a valid letter; with four it is not.
    five = _item("choice", "E", choices=(*CHOICES, "Madrid"))
    assert score(five, "Answer: E").correct
    assert not score(item, "Answer: E").correct


# --- exact and dispatch -------------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.parametrize(
    ("output", "reference", "correct"),
    [
        ("Paris", "paris", True),
        ("  New   York\n", "new york", True),
        ("PARIS", "Paris", True),
        ("Paris.", "Paris", True),  # one final period is punctuation, not the answer
        ("'foobar'", "foobar", True),
        ("**Paris**", "Paris", True),
        ("`abc`.", "abc", True),
        ("Paris, France", "Paris", False),
        ("The capital is Paris", "Paris", False),
        ("Reversing 'abc' gives 'cba'", "Reversing abc gives cba", True),
        ("", "Paris", False),
    ],
)
def test_exact(output: str, reference: str, correct: bool) -> None:
    assert score(_item("exact", reference), output).correct is correct


@pytest.mark.fast
def test_exact_accepts_the_listed_alternatives_only() -> None:
    import dataclasses

    item = dataclasses.replace(_item("exact", "four"), accepted=("A cat has four",))
    assert score(item, "Four.").correct and score(item, "a cat has FOUR").correct
    assert not score(item, "A cat has five").correct and not score(item, "4").correct


@pytest.mark.fast
def test_unknown_scorer_raises() -> None:
    item = _item("exact", "x")
    bogus = Item(
        benchmark=item.benchmark,
        item_id=item.item_id,
        messages=item.messages,
        scorer="judge",  # type: ignore[arg-type]
        reference="x",
    )
    with pytest.raises(EvaluationError, match="unknown scorer"):
        score(bogus, "x")


@pytest.mark.fast
def test_code_item_without_tests() -> None:
    result = score(_item("code", "def f(): pass"), "def f(): pass")
    assert (result.correct, result.detail) == (False, "item has no tests")
