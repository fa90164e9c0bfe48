"""Receipts: what one request used, what that cost in money and CO2, and what the reference
model would have used for the same tokens.

A :class:`Receipt` is flat (one database row) and knows how to show itself as the nested
``smallfirst`` object of a response. :class:`Pricer` holds the operator's constants (grid
intensity, PUE, electricity price, hardware cost, hosted prices, the reference model and
the energy profiles) and turns facts about a request into a receipt.

Rules:
* carbon = kWh × grid g/kWh × PUE (location-based annual average);
* cost of a local model = kWh × electricity price + hardware $/h × duration; of a priced
  hosted model = tokens × its price; otherwise unknown;
* baseline = what the reference model would have used for the same prompt and completion
  token counts, by the first rule that applies (named on the receipt as ``baseline.rule``):

  - ``answered-by-reference``: the reference answered, so the baseline *is* the actual
    figures and the savings are exactly 0;
  - ``profile-ratio``: both models are local and both have per-token profiles: the actual
    energy × (reference profile ÷ answering profile, for these token counts), so whatever
    made this request dearer than the quiet-machine profile (contention, a cold cache)
    scales the baseline too and cancels out; cost from that energy;
  - ``hosted-price``: the reference is a hosted model: cost from its price, energy from its
    profile when it has one;
  - ``reference-profile``: otherwise (a remote answer, a missing profile, a cascade whose
    energy sums several models): the reference's quiet-machine profile for these tokens;
  - ``cache-hit`` (:mod:`smallfirst.server.response_cache`): the reused receipt's baseline;
* savings = baseline − actual, when both are known.
Unknown figures are None with a note, never zero.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from smallfirst.catalog import ModelSpec
from smallfirst.metering.meter import Energy
from smallfirst.metering.pricing import Price, Profile

J_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class Receipt:
    id: str
    created_at: float  # unix seconds
    endpoint: str  # "chat" | "completions" | "embeddings" | "responses"
    model: str
    tier: str
    engine: str  # "llama.cpp" | "remote"
    stream: bool
    status: str  # "ok" | "error" | "cancelled"
    prompt_tokens: int | None
    completion_tokens: int | None
    duration_s: float
    ttft_s: float | None
    energy_j: float | None
    energy_method: str
    energy_scope: str | None
    energy_source: str | None
    energy_note: str | None
    cpu_s: float | None
    cost_usd: float | None
    cost_method: str | None
    co2_g: float | None
    grid_g_per_kwh: float
    pue: float
    carbon_source: str
    baseline_model: str | None
    baseline_energy_j: float | None
    baseline_cost_usd: float | None
    baseline_co2_g: float | None
    baseline_source: str | None
    saved_energy_j: float | None
    saved_cost_usd: float | None
    saved_co2_g: float | None
    policy: str | None = None  # the auto policy that chose the model, if any
    predicted_quality: float | None = None  # the router's P(correct) for the chosen model
    route: str | None = None  # JSON: strategy, why, scores
    key_id: str | None = None  # the API key that asked (issue #15); never its secret
    key_name: str | None = None
    baseline_rule: str | None = None  # how the baseline was made (see the module)
    cache: str | None = None  # "hit" | "miss"; None: not looked up (not cacheable, cache off)
    cache_of: str | None = None  # a hit: the receipt whose answer it reused

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def row(self) -> dict[str, Any]:
        # every field is a plain value: a shallow dict, not asdict()'s recursive deep copy
        # (a third of a cache hit's time in the gateway, 0.1 ms, went to asdict)
        return {name: getattr(self, name) for name in _RECEIPT_COLUMNS}

    def public(self) -> dict[str, Any]:
        """The nested ``smallfirst`` object of responses and of the receipts API."""
        return {
            "receipt_id": self.id,
            "created_at": self.created_at,
            "model": self.model,
            "tier": self.tier,
            "engine": self.engine,
            "status": self.status,
            "policy": self.policy,
            "route": {
                "policy": self.policy,
                "predicted_quality": self.predicted_quality,
                **(json.loads(self.route) if self.route else {}),
            },
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "duration_s": self.duration_s,
            "ttft_s": self.ttft_s,
            "energy": {
                "energy_j": self.energy_j,
                "method": self.energy_method,
                "scope": self.energy_scope,
                "source": self.energy_source,
                "note": self.energy_note,
                "cpu_s": self.cpu_s,
            },
            "cost": {"cost_usd": self.cost_usd, "method": self.cost_method},
            "carbon": {
                "co2_g": self.co2_g,
                "grid_g_per_kwh": self.grid_g_per_kwh,
                "pue": self.pue,
                "source": self.carbon_source,
                "basis": "location-based annual average",
            },
            "baseline": {
                "model": self.baseline_model,
                "energy_j": self.baseline_energy_j,
                "cost_usd": self.baseline_cost_usd,
                "co2_g": self.baseline_co2_g,
                "source": self.baseline_source,
                "rule": self.baseline_rule,
            },
            "savings": {
                "energy_j": self.saved_energy_j,
                "cost_usd": self.saved_cost_usd,
                "co2_g": self.saved_co2_g,
            },
            "cache": {"status": self.cache, "reuses": self.cache_of},
            "key": {"id": self.key_id, "name": self.key_name} if self.key_id else None,
        }

    def headers(self) -> dict[str, str]:
        def fmt(v: float | None) -> str:
            return "unknown" if v is None else f"{v:.6g}"

        return {
            "x-smallfirst-model": self.model,
            "x-smallfirst-receipt-id": self.id,
            "x-smallfirst-energy-j": fmt(self.energy_j),
            "x-smallfirst-energy-method": self.energy_method,
            "x-smallfirst-cost-usd": fmt(self.cost_usd),
            "x-smallfirst-co2-g": fmt(self.co2_g),
            **({"x-smallfirst-cache": self.cache} if self.cache else {}),
        }


_RECEIPT_COLUMNS = tuple(Receipt.columns())


@dataclass(frozen=True, slots=True)
class Overhead:
    """Work billed to no request (loading a model's weights): a row of the summary's
    ``overhead``, with the same energy, cost and CO2 arithmetic as a receipt."""

    created_at: float  # unix seconds
    kind: str  # "model_load"
    model: str
    duration_s: float
    energy_j: float | None
    energy_method: str
    cpu_s: float | None
    cost_usd: float | None
    co2_g: float | None

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Baseline:
    """The reference model's figures for one answer, and the rule that made them."""

    model: str | None
    energy_j: float | None
    cost_usd: float | None
    co2_g: float | None
    source: str | None
    rule: str


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


@dataclass(frozen=True, slots=True)
class Pricer:
    grid_g_per_kwh: float
    carbon_source: str
    pue: float
    electricity_usd_per_kwh: float
    hardware_usd_per_hour: float
    prices: dict[str, Price]
    reference: ModelSpec | None
    reference_profile: Profile | None
    # any model's per-token profile (the like-for-like ratio needs the answering model's)
    profile_of: Callable[[str], Profile | None] | None = None

    def co2_g(self, energy_j: float | None) -> float | None:
        if energy_j is None:
            return None
        return energy_j / J_PER_KWH * self.grid_g_per_kwh * self.pue

    def price_of(self, spec: ModelSpec) -> Price | None:
        if spec.name in self.prices:
            return self.prices[spec.name]
        if spec.price_input_per_mtok_usd is not None and spec.price_output_per_mtok_usd is not None:
            return Price(
                spec.price_input_per_mtok_usd,
                spec.price_output_per_mtok_usd,
                "configured",
                "config file",
            )
        return None

    def cost(
        self,
        spec: ModelSpec,
        energy_j: float | None,
        tokens: tuple[int, int] | None,
        duration_s: float,
    ) -> tuple[float | None, str | None]:
        price = self.price_of(spec)
        if price is not None:
            if tokens is None:
                return None, "token counts unknown"
            return (
                price.cost_usd(*tokens),
                f"price ${price.input_per_mtok_usd:g} / ${price.output_per_mtok_usd:g} "
                f"per Mtok in / out ({price.as_of})",
            )
        if spec.is_remote:
            if energy_j is None:
                return None, "no price configured for this remote model"
            # a self-hosted server (llama-server on the operator's machines) has no price per
            # token; its profile's joules cost what the gateway's own would, and say so
            cost, method = self.energy_cost(energy_j, duration_s)
            return cost, f"no price configured: as self-hosted, {method}"
        return self.energy_cost(energy_j, duration_s)

    def energy_cost(
        self, energy_j: float | None, duration_s: float
    ) -> tuple[float | None, str | None]:
        """The cost of work done here: its electricity and the hardware's time."""
        if energy_j is None:
            return None, "energy unknown"
        kwh = energy_j / J_PER_KWH * self.pue
        cost = kwh * self.electricity_usd_per_kwh + self.hardware_usd_per_hour * duration_s / 3600
        return cost, (
            f"energy × PUE × ${self.electricity_usd_per_kwh:g}/kWh"
            f" + hardware ${self.hardware_usd_per_hour:g}/h × duration"
        )

    def overhead(
        self, kind: str, model: str, energy: Energy, duration_s: float, created_at: float
    ) -> Overhead:
        cost_usd, _ = self.energy_cost(energy.energy_j, duration_s)
        return Overhead(
            created_at=created_at,
            kind=kind,
            model=model,
            duration_s=duration_s,
            energy_j=energy.energy_j,
            energy_method=energy.method,
            cpu_s=energy.cpu_s,
            cost_usd=cost_usd,
            co2_g=self.co2_g(energy.energy_j),
        )

    def hit(self, original: Receipt, energy: Energy, duration_s: float, **facts: Any) -> Receipt:
        """The receipt of a cache hit: the lookup's energy and cost, the reused answer's
        tokens and model, and the reused receipt's baseline (no model ran: all of it is
        saved but the lookup)."""
        cost = self.energy_cost(energy.energy_j, duration_s)
        base = Baseline(
            original.baseline_model,
            original.baseline_energy_j,
            original.baseline_cost_usd,
            original.baseline_co2_g,
            f"the baseline of receipt {original.id} ({original.baseline_rule})",
            "cache-hit",
        )
        ok = facts.get("status", "ok") == "ok"
        return dataclasses.replace(
            original,
            engine="cache",
            duration_s=duration_s,
            ttft_s=duration_s,
            **self._figures(energy, cost, base, ok),
            predicted_quality=None,
            route=None,
            cache="hit",
            cache_of=original.id,
            **facts,
        )

    def _figures(
        self, energy: Energy, cost: tuple[float | None, str | None], base: Baseline, ok: bool
    ) -> dict[str, Any]:
        """A receipt's energy, cost, carbon, baseline and savings fields."""
        co2_g = self.co2_g(energy.energy_j)
        return {
            "energy_j": energy.energy_j,
            "energy_method": energy.method,
            "energy_scope": energy.scope,
            "energy_source": energy.source,
            "energy_note": energy.note,
            "cpu_s": energy.cpu_s,
            "cost_usd": cost[0],
            "cost_method": cost[1],
            "co2_g": co2_g,
            "grid_g_per_kwh": self.grid_g_per_kwh,
            "pue": self.pue,
            "carbon_source": self.carbon_source,
            "baseline_model": base.model,
            "baseline_energy_j": base.energy_j,
            "baseline_cost_usd": base.cost_usd,
            "baseline_co2_g": base.co2_g,
            "baseline_source": base.source,
            "baseline_rule": base.rule,
            # failed requests claim no savings
            "saved_energy_j": _minus(base.energy_j, energy.energy_j) if ok else None,
            "saved_cost_usd": _minus(base.cost_usd, cost[0]) if ok else None,
            "saved_co2_g": _minus(base.co2_g, co2_g) if ok else None,
        }

    def make(
        self,
        *,
        spec: ModelSpec,
        energy: Energy,
        tokens: tuple[int, int] | None,
        duration_s: float,
        like_for_like: bool = True,
        **facts: Any,
    ) -> Receipt:
        """A receipt from a request's facts. ``like_for_like`` False (energy summed over
        several models: a cascade) leaves only the reference's profile as the baseline."""
        cost = self.cost(spec, energy.energy_j, tokens, duration_s)
        actual = Baseline(spec.name, energy.energy_j, cost[0], self.co2_g(energy.energy_j), "", "")
        base = self.baseline(spec, actual, tokens, duration_s, like_for_like)
        ok = facts.get("status", "ok") == "ok"
        return Receipt(
            model=spec.name,
            tier=spec.tier,
            engine="remote" if spec.is_remote else "llama.cpp",
            prompt_tokens=tokens[0] if tokens else None,
            completion_tokens=tokens[1] if tokens else None,
            duration_s=duration_s,
            **self._figures(energy, cost, base, ok),
            **facts,
        )

    def baseline(
        self,
        spec: ModelSpec,
        actual: Baseline,
        tokens: tuple[int, int] | None,
        duration_s: float,
        like_for_like: bool = True,
    ) -> Baseline:
        """What the reference would have used for this answer, by the module's rules."""
        ref = self.reference
        if ref is None:
            return Baseline(None, None, None, None, "no reference model configured", "none")
        if like_for_like and spec.name == ref.name:
            return dataclasses.replace(
                actual, source="the reference model answered: savings are 0",
                rule="answered-by-reference",
            )  # fmt: skip
        if tokens is None:
            return Baseline(ref.name, None, None, None, "token counts unknown", "none")
        if like_for_like and not ref.is_remote and not spec.is_remote:
            scaled = self._ratio(spec, actual.energy_j, tokens, duration_s)
            if scaled is not None:
                return scaled
        profile = self.reference_profile
        energy_j = profile.energy_j(*tokens) if profile else None
        source = (
            f"{profile.method} profile: {profile.source}"
            if profile
            else f"no energy profile for {ref.name}; run `smallfirst models profile {ref.name}`"
        )
        # The reference's time is unknown without running it; hardware cost uses ours.
        cost_usd, _ = self.cost(ref, energy_j, tokens, duration_s)
        rule = "hosted-price" if self.price_of(ref) is not None else "reference-profile"
        return Baseline(ref.name, energy_j, cost_usd, self.co2_g(energy_j), source, rule)

    def _ratio(
        self, spec: ModelSpec, energy_j: float | None, tokens: tuple[int, int], duration_s: float
    ) -> Baseline | None:
        """The profile-ratio baseline, or None when a figure it needs is missing."""
        ref = self.reference
        mine = self.profile_of(spec.name) if self.profile_of else None
        theirs = self.reference_profile
        if ref is None or energy_j is None or mine is None or theirs is None:
            return None
        mine_j, theirs_j = mine.energy_j(*tokens), theirs.energy_j(*tokens)
        if mine_j <= 0:
            return None
        base_j = energy_j * theirs_j / mine_j
        source = (
            f"actual {energy_j:.4g} J × {ref.name} {theirs_j:.4g} J / {spec.name} "
            f"{mine_j:.4g} J (their per-token profiles for these token counts)"
        )
        cost_usd, _ = self.cost(ref, base_j, tokens, duration_s)
        return Baseline(ref.name, base_j, cost_usd, self.co2_g(base_j), source, "profile-ratio")
