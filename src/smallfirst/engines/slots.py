"""Which KV slot a request joining the batched engine takes, and how much of it it reuses.

The batched context gives each slot its own KV stream, and llama.cpp computes a batch in one
pass over the weights per run of consecutive slot ids (it views the streams of one pass as a
contiguous range): a step over slots 0, 1 and 3 costs two passes where 0, 1 and 2 cost one.
A finished request leaves its prompt's KV in its slot for the next one with the same prefix
(multi-turn chats, shared system prompts). :func:`choose_slot` weighs the two: the prompt
tokens a slot's cache saves once against the passes it would add at every step.

This module only decides; the scheduler (:mod:`.scheduler`) moves the KV and fills batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "PASS_COST_TOKENS",
    "PASS_HORIZON_STEPS",
    "Choice",
    "choose_slot",
    "common_prefix",
    "runs",
]

# One more pass over the weights per step costs about what reading 6 prompt tokens does
# (bench/step_weights.py on Qwen-0.5B: 55 ms fixed per step, 9.2 ms per prompt token), at every
# step the split lasts; a request is counted as running at most PASS_HORIZON_STEPS steps with
# the others (most answers are shorter, and the others may finish first).
PASS_COST_TOKENS = 6
PASS_HORIZON_STEPS = 128


@dataclass(frozen=True, slots=True)
class Choice:
    """The slot a request takes and how many leading prompt tokens its cache already holds."""

    slot: int
    reuse: int


def runs(slots: set[int]) -> int:
    """How many runs of consecutive ids ``slots`` forms: llama.cpp's passes per step."""
    return sum(1 for slot in slots if slot - 1 not in slots)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def choose_slot(
    cached: Sequence[Sequence[int]],
    last_used: Sequence[float],
    busy: set[int],
    prompt: Sequence[int],
    steps: int,
    *,
    reuse_prefixes: bool = True,
) -> Choice | None:
    """The free slot for ``prompt``, expected to decode at most ``steps`` steps, or None.

    ``cached[i]`` is the tokens whose KV slot ``i`` holds and ``last_used[i]`` when it last
    ran; ``busy`` the slots of running requests. Each free slot scores the prompt tokens its
    cache saves (never the prompt's last one, whose logits are sampled from; none when
    ``reuse_prefixes`` is off) less ``PASS_COST_TOKENS`` per extra pass per step over at
    most ``PASS_HORIZON_STEPS`` steps. Ties go to the least recently used slot, whose cache
    is the least likely to be asked for again.
    """
    runs_now = runs(busy)
    pass_cost = PASS_COST_TOKENS * max(1, min(steps, PASS_HORIZON_STEPS))
    best: Choice | None = None
    best_key = (float("-inf"), float("-inf"))
    for slot, tokens in enumerate(cached):
        if slot in busy:
            continue
        reuse = min(common_prefix(tokens, prompt), len(prompt) - 1) if reuse_prefixes else 0
        reuse = max(0, reuse)
        extra_passes = runs(busy | {slot}) - runs_now
        key = (float(reuse - pass_cost * extra_passes), -last_used[slot])
        if key > best_key:
            best, best_key = Choice(slot, reuse), key
    return best
