"""A batch's duration and energy, estimated from its lines' token counts before it runs.

Energy is each line's tokens times the model's per-token profile (joules per input and per
output token: measured by ``smallfirst models profile`` or shipped); duration is its tokens
over the batched engine's measured throughput. These are estimates for planning only: the
receipts of the lines, once run, carry the measured figures.

This module does not count tokens or look profiles up; the caller passes both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from smallfirst.metering.pricing import Profile

__all__ = ["Throughput", "estimate"]


@dataclass(frozen=True)
class Throughput:
    """Tokens per second one model's batched engine reads (prompt) and writes (output)."""

    input_tokens_per_s: float
    output_tokens_per_s: float


def estimate(
    lines_tokens: Iterable[tuple[int, int]], profile: Profile, throughput: Throughput
) -> tuple[float, float]:
    """(work_s, energy_wh) for lines given as (input tokens, output tokens) each."""
    tokens_in = tokens_out = 0
    for prompt, completion in lines_tokens:
        tokens_in += max(0, prompt)
        tokens_out += max(0, completion)
    energy_j = profile.energy_j(tokens_in, tokens_out)
    work_s = tokens_in / max(throughput.input_tokens_per_s, 1e-9) + tokens_out / max(
        throughput.output_tokens_per_s, 1e-9
    )
    return work_s, energy_j / 3600.0
