"""Prompt and answer features: shape, determinism across processes, and the cues they read."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from smallfirst.routing.features import (
    DENSE_FEATURES,
    N_DENSE,
    N_HASH_BUCKETS,
    N_OUTPUT_FEATURES,
    N_PROMPT_FEATURES,
    hashed_bag,
    output_features,
    prompt_feature_matrix,
    prompt_features,
)
from smallfirst.types import Message

pytestmark = pytest.mark.fast


def user(text: str) -> tuple[Message, ...]:
    return (Message(role="user", content=text),)


def dense(text: str) -> dict[str, float]:
    return dict(zip(DENSE_FEATURES, prompt_features(user(text))[:N_DENSE], strict=True))


MMLU_LIKE = (
    "Answer with the letter of the correct option.\n\n"
    "The following are multiple choice questions (with answers) about physics.\n\n"
    + "Which is heavier?\nA. a\nB. b\nC. c\nD. d\nAnswer: B\n\n" * 5
    + "Which is lighter?\nA. a\nB. b\nC. c\nD. d\nAnswer:"
)
CODE = "Write a python function `add(a, b)` that returns the sum.\n```python\ndef add(a, b):\n```"
MATH = "Tom has 12 apples and buys 3 times as many. How many apples in total? 12 * 3 + 12 = ?"


def test_shape_and_normalisation() -> None:
    v = prompt_features(user(MMLU_LIKE))
    assert v.shape == (N_PROMPT_FEATURES,) == (N_DENSE + N_HASH_BUCKETS,)
    assert v.dtype == np.float64
    assert np.all(np.isfinite(v))
    assert np.isclose(np.linalg.norm(v[N_DENSE:]), 1.0)  # the hashed bag is L2-normalised
    assert np.all(v[:N_DENSE] >= 0) and np.all(v[:N_DENSE] <= 1.5)


def test_empty_and_odd_prompts_do_not_fail() -> None:
    for messages in ((), user(""), user("é" * 10), user("x " * 50_000)):
        v = prompt_features(messages)
        assert v.shape == (N_PROMPT_FEATURES,) and np.all(np.isfinite(v))


def test_cues() -> None:
    mc, code, math = dense(MMLU_LIKE), dense(CODE), dense(MATH)
    assert mc["choice_layout"] == 1.0 and mc["few_shot"] == 1.0
    assert code["choice_layout"] == 0.0 and code["few_shot"] == 0.0
    assert code["code_fences_log"] > 0 and code["code_def_log"] > 0 and code["write_a_log"] > 0
    assert math["code_fences_log"] == 0
    assert math["numbers_log"] > code["numbers_log"]
    assert math["math_words_log"] > 0 and math["math_operators_log"] > 0
    assert math["question_marks_log"] > 0 and math["wh_words_log"] > 0
    assert dense("a " * 500)["words_log"] > dense("a a")["words_log"]


def test_system_message_and_last_message() -> None:
    messages = (Message(role="system", content="Be brief."), Message(role="user", content="hi"))
    d = dict(zip(DENSE_FEATURES, prompt_features(messages)[:N_DENSE], strict=True))
    assert d["system_message"] == 1.0
    assert d["messages_log"] > dense("hi")["messages_log"]


def test_hashing_is_stable_across_processes() -> None:
    # Python's hash() is salted per process; the features must not be
    code = (
        "import json;"
        "from smallfirst.routing.features import prompt_features as f;"
        "from smallfirst.types import Message as M;"
        f"print(json.dumps(f((M('user', {MMLU_LIKE!r}),)).tolist()))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(other) == prompt_features(user(MMLU_LIKE)).tolist()


def test_hashed_bag_known_values() -> None:
    # pins the hash: a change here silently invalidates every saved router
    v = hashed_bag(["hello"])
    assert np.count_nonzero(v) == 1
    bucket = int(np.flatnonzero(v)[0])
    assert (bucket, float(v[bucket])) == (HELLO_BUCKET, HELLO_SIGN)
    assert not hashed_bag([]).any()


HELLO_BUCKET, HELLO_SIGN = 109, 1.0  # zlib.crc32(b"hello") through murmur3's finaliser


def test_matrix_matches_rows() -> None:
    prompts = [user(MMLU_LIKE), user(CODE), user(MATH)]
    m = prompt_feature_matrix(prompts)
    for row, p in zip(m, prompts, strict=True):
        assert np.array_equal(row, prompt_features(p))


def test_output_features() -> None:
    assert output_features("").shape == (N_OUTPUT_FEATURES,)
    good = output_features("Step one.\nThe answer is: 42")
    loop = output_features("the same line\n" * 30)
    assert good[6] == 1.0 and good[7] == 1.0  # "answer is", a number at the end
    assert loop[9] > 0.9 and loop[10] > 0.9  # repeated lines and 4-grams
    assert output_features("```python\ndef f():")[4] == 1.0  # an unclosed fence
    assert output_features("B")[8] == 1.0  # a leading option letter
