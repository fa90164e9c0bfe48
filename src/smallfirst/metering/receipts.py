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
* baseline = the reference model for the same prompt and completion token counts: energy
  from its per-token profile, cost from its price (hosted) or that energy (local);
* savings = baseline − actual, when both are known.
Unknown figures are None with a note, never zero.
"""

from __future__ import annotations

import json
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
    endpoint: str  # "chat" | "completions"
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

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def row(self) -> dict[str, Any]:
        return asdict(self)

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
            },
            "savings": {
                "energy_j": self.saved_energy_j,
                "cost_usd": self.saved_cost_usd,
                "co2_g": self.saved_co2_g,
            },
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
        }


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
            return None, "no price configured for this remote model"
        if energy_j is None:
            return None, "energy unknown"
        kwh = energy_j / J_PER_KWH * self.pue
        cost = kwh * self.electricity_usd_per_kwh + self.hardware_usd_per_hour * duration_s / 3600
        return cost, (
            f"energy × PUE × ${self.electricity_usd_per_kwh:g}/kWh"
            f" + hardware ${self.hardware_usd_per_hour:g}/h × duration"
        )

    def make(
        self,
        *,
        spec: ModelSpec,
        energy: Energy,
        tokens: tuple[int, int] | None,
        duration_s: float,
        **facts: Any,
    ) -> Receipt:
        cost_usd, cost_method = self.cost(spec, energy.energy_j, tokens, duration_s)
        co2_g = self.co2_g(energy.energy_j)
        base = self._baseline(tokens, duration_s)
        ok = facts.get("status", "ok") == "ok"
        return Receipt(
            model=spec.name,
            tier=spec.tier,
            engine="remote" if spec.is_remote else "llama.cpp",
            prompt_tokens=tokens[0] if tokens else None,
            completion_tokens=tokens[1] if tokens else None,
            duration_s=duration_s,
            energy_j=energy.energy_j,
            energy_method=energy.method,
            energy_scope=energy.scope,
            energy_source=energy.source,
            energy_note=energy.note,
            cpu_s=energy.cpu_s,
            cost_usd=cost_usd,
            cost_method=cost_method,
            co2_g=co2_g,
            grid_g_per_kwh=self.grid_g_per_kwh,
            pue=self.pue,
            carbon_source=self.carbon_source,
            baseline_model=base[0],
            baseline_energy_j=base[1],
            baseline_cost_usd=base[2],
            baseline_co2_g=base[3],
            baseline_source=base[4],
            saved_energy_j=_minus(base[1], energy.energy_j) if ok else None,
            saved_cost_usd=_minus(base[2], cost_usd) if ok else None,
            saved_co2_g=_minus(base[3], co2_g) if ok else None,
            **facts,
        )

    def _baseline(
        self, tokens: tuple[int, int] | None, duration_s: float
    ) -> tuple[str | None, float | None, float | None, float | None, str | None]:
        ref = self.reference
        if ref is None:
            return None, None, None, None, "no reference model configured"
        if tokens is None:
            return ref.name, None, None, None, "token counts unknown"
        profile = self.reference_profile
        energy_j = profile.energy_j(*tokens) if profile else None
        source = (
            f"{profile.method} profile: {profile.source}"
            if profile
            else f"no energy profile for {ref.name}; run `smallfirst models profile {ref.name}`"
        )
        # The reference's time is unknown without running it; hardware cost uses ours.
        cost_usd, _ = self.cost(ref, energy_j, tokens, duration_s)
        return ref.name, energy_j, cost_usd, self.co2_g(energy_j), source
