"""Unit tests of the batched engine's slot choice (pure logic): prefixes against passes."""

import pytest

from smallfirst.engines.slots import (
    PASS_COST_TOKENS,
    PASS_HORIZON_STEPS,
    choose_slot,
    common_prefix,
    runs,
)

pytestmark = pytest.mark.fast

SYSTEM = list(range(100, 130))  # a 30-token shared system prompt


def test_runs_counts_consecutive_stretches() -> None:
    assert runs(set()) == 0
    assert runs({3}) == 1
    assert runs({0, 1, 2, 3}) == 1
    assert runs({0, 1, 3}) == 2
    assert runs({1, 3, 5, 6}) == 3


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2]) == 2


def test_idle_engine_takes_the_longest_prefix_then_the_least_recently_used() -> None:
    cached = [[], [*SYSTEM, 1], SYSTEM[:10], []]
    used = [5.0, 1.0, 2.0, 3.0]
    choice = choose_slot(cached, used, set(), [*SYSTEM, 7, 8], steps=100)
    assert choice is not None and (choice.slot, choice.reuse) == (1, 30)
    # nothing shared: the slot idle longest
    choice = choose_slot(cached, used, set(), [9, 9, 9], steps=100)
    assert choice is not None and (choice.slot, choice.reuse) == (1, 0)
    choice = choose_slot([[], [], []], [3.0, 1.0, 2.0], set(), [9], steps=100)
    assert choice is not None and choice.slot == 1


def test_never_reuses_the_last_prompt_token() -> None:
    choice = choose_slot([SYSTEM], [0.0], set(), SYSTEM, steps=10)
    assert choice is not None and choice.reuse == len(SYSTEM) - 1


def test_a_short_prefix_does_not_split_the_running_slots() -> None:
    # slots 0 and 1 run; slot 3 holds the system prompt, slot 2 nothing: taking 3 would make
    # every step two passes, which costs more than reading 30 tokens again
    cached = [[], [], [], [*SYSTEM, 1]]
    choice = choose_slot(cached, [0.0] * 4, {0, 1}, [*SYSTEM, 2], steps=100)
    assert choice is not None and (choice.slot, choice.reuse) == (2, 0)


def test_a_long_prefix_is_worth_a_split() -> None:
    history = list(range(1000, 1000 + PASS_COST_TOKENS * PASS_HORIZON_STEPS + 50))
    cached = [[], [], [], history]
    choice = choose_slot(cached, [0.0] * 4, {0, 1}, [*history, 5], steps=500)
    assert choice is not None and (choice.slot, choice.reuse) == (3, len(history))


def test_a_short_answer_weighs_the_split_less() -> None:
    # an answer of 2 steps pays the extra pass twice: 12 tokens, less than the 30 it saves
    cached = [[], [], [], [*SYSTEM, 1]]
    choice = choose_slot(cached, [0.0] * 4, {0, 1}, [*SYSTEM, 2], steps=2)
    assert choice is not None and choice.slot == 3


def test_filling_a_hole_joins_two_runs() -> None:
    # slots 0 and 2 run (two passes); slot 1 merges them, slot 3 extends the second run
    choice = choose_slot([[], [], [], []], [0.0, 0.0, 0.0, 1.0], {0, 2}, [1], steps=50)
    assert choice is not None and choice.slot == 1


def test_prefix_reuse_off_reuses_nothing_but_keeps_slots_together() -> None:
    cached = [[], [], [*SYSTEM, 1], []]
    choice = choose_slot(cached, [0.0] * 4, {0}, [*SYSTEM, 2], steps=100, reuse_prefixes=False)
    assert choice is not None and (choice.slot, choice.reuse) == (1, 0)


def test_no_free_slot() -> None:
    assert choose_slot([[], []], [0.0, 0.0], {0, 1}, [1], steps=5) is None
