"""Load a user's own benchmark file, ``jsonl:PATH[?scorer=NAME]``, as evaluation items.

A user's own file, one JSON object per line (blank lines are skipped)::

    {"id": "q1", "prompt": "What is 6*7?", "answer": "42", "scorer": "math"}

``id`` (string or integer, unique), exactly one of ``prompt`` (a string, sent as one user
message) or ``messages`` (a list of ``{"role", "content"}``), ``answer`` (required except
for code), and optionally ``scorer`` (code | math | choice | exact), ``choices`` (option
texts in letter order; the prompt must show them itself), ``tests`` (required for code),
``entry_point``, ``subject``, ``max_tokens``, ``stop`` (up to 4 strings) and
``assistant_prefix`` (the start of the reply, written for the model: EvalPlus's
convention; in-process models only; the stored output begins with it). The scorer is
chosen per line; a ``?scorer=NAME`` suffix on the benchmark name sets the default for
lines that do not name one, and without either it is ``exact``. A choice answer is a letter
within the choices; a math answer must parse as a number (commas are dropped). Unknown keys
and malformed lines are errors naming the file and line number.

This module parses and checks the file, afresh on every call (nothing is cached, so a file
edited between runs is read as it is now); it does not score answers or run models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, cast

from smallfirst.errors import BenchmarkError
from smallfirst.evals.formats import LETTERS, ROLES, SCORERS, parse_number, user_turn
from smallfirst.evals.items import Item, ScorerName
from smallfirst.types import Message

__all__ = ["load_jsonl", "parse_jsonl_name"]

_JSONL_KEYS: Final = frozenset(
    {"id", "prompt", "messages", "answer", "scorer", "choices", "tests", "entry_point"}
    | {"subject", "max_tokens", "assistant_prefix", "stop"}
)


def parse_jsonl_name(name: str) -> tuple[Path, ScorerName]:
    """Split ``jsonl:PATH[?scorer=NAME]`` into the path and the default scorer."""
    rest = name.removeprefix("jsonl:")
    default = "exact"
    if "?scorer=" in rest:
        rest, _, default = rest.rpartition("?scorer=")
        if default not in SCORERS:
            raise BenchmarkError(
                f"{name}: unknown scorer {default!r}; choose one of {', '.join(SCORERS)}"
            )
    if not rest:
        raise BenchmarkError(f"{name}: give a file, as jsonl:PATH[?scorer=NAME]")
    return Path(rest).expanduser(), cast(ScorerName, default)


def _string(row: Mapping[str, Any], key: str, where: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BenchmarkError(f"{where}: {key!r} must be a string")
    return value


def _jsonl_messages(row: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    if ("prompt" in row) == ("messages" in row):
        raise BenchmarkError(f"{where}: give exactly one of 'prompt' or 'messages'")
    if "prompt" in row:
        prompt = _string(row, "prompt", where)
        if not prompt:
            raise BenchmarkError(f"{where}: 'prompt' must be a non-empty string")
        return user_turn(prompt)
    raw = row["messages"]
    if not isinstance(raw, list) or not raw:
        raise BenchmarkError(f"{where}: 'messages' must be a non-empty list")
    messages = []
    for i, m in enumerate(raw):
        if (
            not isinstance(m, dict)
            or m.get("role") not in ROLES
            or not isinstance(m.get("content"), str)
        ):
            raise BenchmarkError(
                f"{where}: messages[{i}] must be {{'role': one of {', '.join(ROLES)}, "
                f"'content': a string}}"
            )
        messages.append(Message(role=m["role"], content=m["content"]))
    return tuple(messages)


def _jsonl_item(row: object, where: str, benchmark: str, default_scorer: ScorerName) -> Item:
    if not isinstance(row, dict):
        raise BenchmarkError(f"{where}: each line must be a JSON object")
    unknown = sorted(set(row) - _JSONL_KEYS)
    if unknown:
        raise BenchmarkError(
            f"{where}: unknown keys {unknown}; allowed: {', '.join(sorted(_JSONL_KEYS))}"
        )
    raw_id = row.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or raw_id == "":
        raise BenchmarkError(f"{where}: 'id' must be a non-empty string or an integer")
    scorer = row.get("scorer", default_scorer)
    if scorer not in SCORERS:
        raise BenchmarkError(f"{where}: 'scorer' must be one of {', '.join(SCORERS)}")
    messages = _jsonl_messages(row, where)

    choices_raw = row.get("choices", [])
    if not isinstance(choices_raw, list) or not all(isinstance(c, str) for c in choices_raw):
        raise BenchmarkError(f"{where}: 'choices' must be a list of strings")
    if len(choices_raw) > len(LETTERS):
        raise BenchmarkError(f"{where}: at most {len(LETTERS)} choices")
    choices = tuple(choices_raw)

    answer = row.get("answer")
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        answer = str(answer)
    if answer is None and scorer == "code":
        answer = ""
    if not isinstance(answer, str):
        raise BenchmarkError(f"{where}: 'answer' must be a string (or a number)")
    if scorer == "math":
        answer = answer.replace(",", "").strip()
        if parse_number(answer) is None:
            raise BenchmarkError(f"{where}: a math answer must be a number, got {answer!r}")
    elif scorer == "choice":
        answer = answer.strip().upper()
        allowed = LETTERS[: len(choices)] if choices else LETTERS
        if len(answer) != 1 or answer not in allowed:
            raise BenchmarkError(
                f"{where}: a choice answer must be one letter of {allowed[0]}..{allowed[-1]}"
            )

    tests = _string(row, "tests", where)
    if scorer == "code" and not tests:
        raise BenchmarkError(f"{where}: a code item needs 'tests'")
    max_tokens = row.get("max_tokens", 512)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BenchmarkError(f"{where}: 'max_tokens' must be a positive integer")
    stop = row.get("stop", [])
    if (
        not isinstance(stop, list)
        or len(stop) > 4
        or not all(isinstance(x, str) and x for x in stop)
    ):
        raise BenchmarkError(f"{where}: 'stop' must be a list of up to 4 non-empty strings")
    return Item(
        benchmark=benchmark,
        item_id=str(raw_id),
        messages=messages,
        scorer=cast(ScorerName, scorer),
        reference=answer,
        subject=_string(row, "subject", where),
        choices=choices,
        tests=tests,
        entry_point=_string(row, "entry_point", where),
        max_tokens=max_tokens,
        assistant_prefix=_string(row, "assistant_prefix", where),
        stop=tuple(stop),
    )


def load_jsonl(name: str) -> list[Item]:
    """Load ``jsonl:PATH[?scorer=NAME]``; see the module docstring for the line format."""
    path, default_scorer = parse_jsonl_name(name)
    benchmark = f"jsonl:{path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"cannot read benchmark file {path}: {exc}") from exc
    items: list[Item] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkError(f"{where}: not valid JSON ({exc.msg})") from None
        item = _jsonl_item(row, where, benchmark, default_scorer)
        if item.item_id in seen:
            raise BenchmarkError(f"{where}: duplicate id {item.item_id!r}")
        seen.add(item.item_id)
        items.append(item)
    if not items:
        raise BenchmarkError(f"benchmark file {path} has no items")
    return items
