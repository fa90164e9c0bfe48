"""Cheap text features of a chat prompt (and of a model's answer) as fixed-length vectors.

:func:`prompt_features` turns chat messages into ``N_PROMPT_FEATURES`` floats: first
``DENSE_FEATURES`` (lengths, digits and numbers, math cue words and operators, code cues,
question cues, a multiple-choice layout, few-shot "Answer:" markers, character mix), then
``N_HASH_BUCKETS`` buckets of a signed hashed bag of words and word bigrams. Every dense
feature is scaled into roughly [0, 1] (counts as ``log1p(count) / log1p(typical maximum)``,
ratios as they are); the hashed part is L2-normalised, so it describes *what* a prompt is
about while the dense part says *how long* it is. :func:`output_features` does the same, much
more briefly, for a model's answer (the cascade's output verifier reads it).

Hashing uses ``zlib.crc32`` followed by murmur3's 32-bit finaliser, never Python's
``hash()`` (salted per process), so a vector is the same in every process and on every
machine, which is what lets a fitted router be saved and loaded. Changing anything here that
changes a vector must bump :data:`FEATURE_SPEC_VERSION`: artifacts record the version they
were trained with and refuse to load against another.

Cost: one pass of a few compiled regexes and ``str.count`` calls plus numpy on at most
:data:`MAX_HASHED_TOKENS` tokens, well under a millisecond for a 5-shot MMLU prompt (see
``bench/routing_overhead.py``). Lengths always describe the whole prompt; only the hashed
bag of words looks at a bounded head and tail of a very long one.

This module only computes vectors; it does not learn anything, and it knows nothing about
models or benchmarks.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from smallfirst.types import Message

# the array types every routing module shares
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

FEATURE_SPEC_VERSION: Final = 1
N_HASH_BUCKETS: Final = 256
# Tokens hashed per prompt: the first and last half of this many. Bounds the cost of a huge
# prompt; lengths (which carry most of "how hard") are still computed on the whole text.
MAX_HASHED_TOKENS: Final = 4096

DENSE_FEATURES: Final[tuple[str, ...]] = (
    "chars_log",
    "words_log",
    "lines_log",
    "messages_log",
    "last_message_chars_log",
    "system_message",
    "mean_word_len",
    "digit_ratio",
    "upper_ratio",
    "non_ascii_ratio",
    "numbers_log",
    "math_words_log",
    "math_operators_log",
    "code_fences_log",
    "code_def_log",
    "code_return_log",
    "word_function_log",
    "word_python_log",
    "write_a_log",
    "code_other_log",
    "question_marks_log",
    "wh_words_log",
    "question_label_log",
    "choice_lines_log",
    "choice_layout",
    "answer_markers_log",
    "few_shot",
)
N_DENSE: Final = len(DENSE_FEATURES)
N_PROMPT_FEATURES: Final = N_DENSE + N_HASH_BUCKETS

OUTPUT_FEATURES: Final[tuple[str, ...]] = (
    "out_chars_log",
    "out_lines_log",
    "out_empty",
    "out_code_fences_log",
    "out_unclosed_fence",
    "out_code_def_log",
    "out_answer_is",
    "out_number_at_end",
    "out_leading_letter",
    "out_repeated_lines",
    "out_repeated_ngrams",
    "out_clean_end",
)
N_OUTPUT_FEATURES: Final = len(OUTPUT_FEATURES)

_WORD = re.compile(r"[a-z0-9_]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CHOICE_LINE = re.compile(r"^[ \t]*\(?[A-D][.)][ \t]", re.MULTILINE)
_DEF = re.compile(r"\bdef\s")
_RETURN = re.compile(r"\breturn\b")
# a question word opening a line or a sentence
_WH_START = re.compile(
    r"(?:^|[.!?:]\s+)\s*(?:what|which|who|whom|whose|when|where|why|how)\b", re.MULTILINE
)
_ANSWER_IS = re.compile(r"answer is\s*:?\s*\$?-?[\d.,]+")
_NUMBER_AT_END = re.compile(r"-?\d[\d,]*(?:\.\d+)?\D{0,3}$")
_LEADING_LETTER = re.compile(r"^\s*\(?[A-Ea-e](?:[.):]|\s|$)")

_MATH_WORDS: Final = frozenset(
    {
        "total",
        "sum",
        "difference",
        "product",
        "calculate",
        "compute",
        "solve",
        "equation",
        "percent",
        "percentage",
        "average",
        "ratio",
        "fraction",
        "each",
        "per",
        "remaining",
        "left",
        "cost",
        "costs",
        "price",
        "dollars",
        "minutes",
        "hours",
        "twice",
        "half",
        "times",
    }
)
_MATH_OPERATORS: Final = ("+", "-", "*", "/", "=", "^", "%", "<", ">", "$")
_CODE_OTHER: Final = ("import ", "class ", "assert ", ">>>", "lambda", "print(", "self.", "->")

_MASK32: Final = np.uint64(0xFFFFFFFF)
_BIGRAM_MUL: Final = np.uint64(0x9E3779B1)


def _log(count: float, typical_max: float) -> float:
    """log1p(count) scaled so that ``typical_max`` maps to 1 (larger values exceed 1)."""
    return math.log1p(count) / math.log1p(typical_max)


def _fmix32(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """murmur3's 32-bit finaliser: spreads every input bit over the bucket and sign bits."""
    h = h ^ (h >> np.uint64(16))
    h = (h * np.uint64(0x85EBCA6B)) & _MASK32
    h = h ^ (h >> np.uint64(13))
    h = (h * np.uint64(0xC2B2AE35)) & _MASK32
    return h ^ (h >> np.uint64(16))


def hashed_bag(tokens: Sequence[str], buckets: int = N_HASH_BUCKETS) -> FloatArray:
    """Signed hashing of unigrams and bigrams into ``buckets`` (a power of two), L2-normalised.

    Each n-gram adds +1 or -1 (a hash bit) to its bucket, so collisions cancel in
    expectation instead of piling up (Weinberger et al. 2009, "Feature hashing for large
    scale multitask learning").
    """
    out = np.zeros(buckets, dtype=np.float64)
    if not tokens:
        return out
    if len(tokens) > MAX_HASHED_TOKENS:
        half = MAX_HASHED_TOKENS // 2
        tokens = [*tokens[:half], *tokens[-half:]]
    # crc32 once per distinct token: prompts repeat words a lot
    cache: dict[str, int] = {}
    raw = []
    for t in tokens:
        h = cache.get(t)
        if h is None:
            h = cache[t] = zlib.crc32(t.encode())
        raw.append(h)
    uni = np.asarray(raw, dtype=np.uint64)
    # bigram hash from its two unigram hashes: no string building
    bi = (uni[:-1] * _BIGRAM_MUL + uni[1:] + np.uint64(1)) & _MASK32
    mixed = _fmix32(np.concatenate([uni, bi]))
    index = (mixed & np.uint64(buckets - 1)).astype(np.intp)
    sign = 1.0 - 2.0 * ((mixed >> np.uint64(31)) & np.uint64(1)).astype(np.float64)
    out += np.bincount(index, weights=sign, minlength=buckets)
    norm = float(np.sqrt(out @ out))
    if norm > 0:
        out /= norm
    return out


def prompt_text(messages: Sequence[Message]) -> str:
    """The contents of every message, joined by blank lines (roles are features apart)."""
    return "\n\n".join(m.content for m in messages)


def prompt_features(messages: Sequence[Message]) -> FloatArray:
    """The feature vector of a chat prompt: ``N_PROMPT_FEATURES`` float64 values."""
    text = prompt_text(messages)
    lower = text.lower()
    tokens = _WORD.findall(lower)
    n_chars = len(text)
    n_words = len(tokens)
    last = messages[-1].content if messages else ""
    letters = sum(len(t) for t in tokens)
    # Character classes counted on the UTF-8 bytes with numpy: a Python loop over the
    # characters of a 5-shot prompt would cost more than everything else here.
    raw = np.frombuffer(text.encode("utf-8", errors="replace"), dtype=np.uint8)
    n_bytes = max(len(raw), 1)
    digits = int(np.count_nonzero((raw >= 48) & (raw <= 57)))
    upper = int(np.count_nonzero((raw >= 65) & (raw <= 90)))
    non_ascii = int(np.count_nonzero(raw >= 128))
    choice_lines = len(_CHOICE_LINE.findall(text))
    answers = lower.count("answer:")
    dense = (
        _log(n_chars, 20_000),
        _log(n_words, 4_000),
        _log(text.count("\n") + 1, 400),
        _log(len(messages), 16),
        _log(len(last), 20_000),
        float(any(m.role in ("system", "developer") for m in messages)),
        min(letters / n_words, 20.0) / 10.0 if n_words else 0.0,
        digits / n_bytes,
        upper / n_bytes,
        non_ascii / n_bytes,
        _log(len(_NUMBER.findall(text)), 200),
        _log(sum(1 for t in tokens if t in _MATH_WORDS) + lower.count("how many"), 50),
        _log(sum(text.count(op) for op in _MATH_OPERATORS), 200),
        _log(text.count("```"), 10),
        _log(len(_DEF.findall(text)), 10),
        _log(len(_RETURN.findall(lower)), 20),
        _log(lower.count("function"), 10),
        _log(lower.count("python"), 10),
        _log(lower.count("write a"), 10),
        _log(sum(text.count(cue) for cue in _CODE_OTHER), 50),
        _log(text.count("?"), 20),
        _log(len(_WH_START.findall(lower)), 20),
        _log(lower.count("question:"), 10),
        _log(choice_lines, 40),
        float(choice_lines >= 2),
        _log(answers, 10),
        float(answers >= 2),
    )
    out = np.empty(N_PROMPT_FEATURES, dtype=np.float64)
    out[:N_DENSE] = dense
    out[N_DENSE:] = hashed_bag(tokens)
    return out


def prompt_feature_matrix(prompts: Sequence[Sequence[Message]]) -> FloatArray:
    """:func:`prompt_features` of each prompt, one row each: shape ``(n, N_PROMPT_FEATURES)``."""
    out = np.zeros((len(prompts), N_PROMPT_FEATURES), dtype=np.float64)
    for i, messages in enumerate(prompts):
        out[i] = prompt_features(messages)
    return out


def output_features(output: str) -> FloatArray:
    """Features of a model's answer that say "this went wrong" without knowing the task.

    Empty or cut-off answers, an unclosed code fence, degenerate repetition (small models
    loop), and whether the answer has the shape the usual formats ask for (a final number,
    "the answer is", a leading option letter, a code block).
    """
    text = output.strip()
    lower = text.lower()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    tokens = _WORD.findall(lower)
    fences = text.count("```")
    repeated_lines = 1.0 - len(set(lines)) / len(lines) if lines else 0.0
    if len(tokens) >= 8:
        grams = [" ".join(tokens[i : i + 4]) for i in range(len(tokens) - 3)]
        repeated_ngrams = 1.0 - len(set(grams)) / len(grams)
    else:
        repeated_ngrams = 0.0
    values = (
        _log(len(text), 4_000),
        _log(len(lines), 200),
        float(not text),
        _log(fences, 10),
        float(fences % 2 == 1),
        _log(len(_DEF.findall(text)), 10),
        float(_ANSWER_IS.search(lower) is not None),
        float(_NUMBER_AT_END.search(text) is not None),
        float(_LEADING_LETTER.match(text) is not None),
        repeated_lines,
        repeated_ngrams,
        float(bool(text) and text[-1] in ".!?`)]}\"'"),
    )
    return np.asarray(values, dtype=np.float64)
