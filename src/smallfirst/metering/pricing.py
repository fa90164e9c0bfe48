"""Prices and per-token energy profiles: what a request costs, and what it would have cost.

Two kinds of fact live here:

* **Prices** of hosted models, per million input and output tokens, with the date they were
  published; the built-in ones are reference points for the counterfactual ("what would
  gpt-4o have charged for this?") and every one can be overridden in settings.
* **Energy profiles**: joules per input token and per output token of a model, measured by
  ``smallfirst models profile NAME`` (or configured by the operator). They give remote models
  an energy figure (method ``profile``) and give every receipt its baseline: the reference
  model's energy for the same token counts.

This module does no measuring and no I/O beyond reading and writing the profiles file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok_usd: float
    output_per_mtok_usd: float
    as_of: str
    source: str

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok_usd + completion_tokens * self.output_per_mtok_usd
        ) / 1e6


# Published list prices, for counterfactuals; the operator can override or add to them.
REFERENCE_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60, "2024-07-18", "OpenAI list price at launch"),
    "gpt-4o": Price(2.50, 10.00, "2024-08-06", "OpenAI list price (gpt-4o-2024-08-06)"),
    "gpt-3.5-turbo": Price(0.50, 1.50, "2024-01-25", "OpenAI list price (gpt-3.5-turbo-0125)"),
}


@dataclass(frozen=True, slots=True)
class Profile:
    """Energy per token of one model, and where the figures come from."""

    model: str
    j_per_input_token: float
    j_per_output_token: float
    method: str  # how the profile's own figures were obtained: "measured" or "estimated"
    source: str  # e.g. "smallfirst models profile on AMD EPYC 7B13, 2 threads, 2026-11-29"

    def energy_j(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.j_per_input_token + completion_tokens * self.j_per_output_token


def _shipped_profiles() -> dict[str, Profile]:
    path = Path(__file__).with_name("default_profiles.json")
    if not path.is_file():
        return {}
    return {p["model"]: Profile(**p) for p in json.loads(path.read_text())["profiles"]}


class ProfileBook:
    """Profiles from three places, strongest last: shipped defaults, measured, configured."""

    def __init__(self, path: Path, configured: dict[str, Profile] | None = None) -> None:
        self.path = path
        self._profiles = _shipped_profiles()
        self._profiles.update(self._read())
        self._profiles.update(configured or {})

    def _read(self) -> dict[str, Profile]:
        if not self.path.is_file():
            return {}
        try:
            raw = json.loads(self.path.read_text())
            return {name: Profile(**p) for name, p in raw.items()}
        except (ValueError, TypeError) as exc:
            log.warning("ignoring unreadable profiles file %s: %s", self.path, exc)
            return {}

    def get(self, model: str) -> Profile | None:
        return self._profiles.get(model)

    def save(self, profile: Profile) -> None:
        """Record a measured profile (atomically replacing the file)."""
        measured = self._read()
        measured[profile.model] = profile
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: asdict(v) for k, v in measured.items()}, indent=2))
        tmp.replace(self.path)
        self._profiles[profile.model] = profile
