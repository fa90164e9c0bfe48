"""The building blocks every benchmark loader shares: how items are written and read.

The built-in loaders (:mod:`.code_benchmarks`, :mod:`.answer_benchmarks`) and the user-file
loader (:mod:`.user_file`) all letter options the same way, send a prompt as one user turn,
read numbers the same way and accept the same scorer names and message roles; those shared
pieces live here so that each loader imports them, and none imports another loader.

This module only formats and parses text: it reads no files, fetches nothing and knows no
particular benchmark.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from typing import Any, Final, get_args

from smallfirst.evals.items import ScorerName
from smallfirst.types import Message, Role

__all__ = [
    "CHOICE_INSTRUCTION",
    "LETTERS",
    "ROLES",
    "SCORERS",
    "choice_prompt",
    "jsonl_rows",
    "lettered",
    "normalise_newlines",
    "parse_number",
    "user_turn",
]

LETTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Opens every multiple-choice prompt: a chat model otherwise tends to answer in prose.
CHOICE_INSTRUCTION: Final = "Answer with the letter of the correct option."

SCORERS: Final[tuple[str, ...]] = get_args(ScorerName)
ROLES: Final[tuple[str, ...]] = get_args(Role)


def user_turn(content: str) -> tuple[Message, ...]:
    """A prompt sent as a single user message."""
    return (Message(role="user", content=content),)


def lettered(choices: Sequence[str]) -> str:
    """Options one per line, lettered ``A.``, ``B.`` … in the order given."""
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def choice_prompt(question: str, choices: Sequence[str]) -> str:
    """Zero-shot multiple choice in the OLMES "Question: ... Answer:" layout."""
    return f"{CHOICE_INSTRUCTION}\n\nQuestion: {question}\n{lettered(choices)}\nAnswer:"


def parse_number(text: str) -> float | None:
    """``text`` as a number (thousands commas dropped), or None if it is not one."""
    try:
        return float(text.replace(",", "").strip())
    except ValueError:
        return None


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n")


def jsonl_rows(data: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file's bytes, gzip-compressed or not; blank lines skipped."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
