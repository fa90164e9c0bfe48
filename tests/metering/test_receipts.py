"""Carbon, cost, baseline and savings arithmetic, and the receipt's two shapes."""

from __future__ import annotations

import pytest

from smallfirst.catalog import BUILTIN_MODELS, ModelSpec, Remote
from smallfirst.metering.meter import Energy
from smallfirst.metering.pricing import REFERENCE_PRICES, Price, Profile
from smallfirst.metering.receipts import J_PER_KWH, Pricer

pytestmark = pytest.mark.fast

SMOL = next(m for m in BUILTIN_MODELS if m.name == "smollm2-135m-instruct")
REF = next(m for m in BUILTIN_MODELS if m.name == "qwen2.5-coder-1.5b-instruct")
HOSTED = ModelSpec(
    name="gpt-4o",
    tier="remote",
    parameters="?",
    quantization="?",
    context_length=128000,
    license="proprietary",
    source="x",
    remote=Remote("http://h/v1", "gpt-4o"),
)


def pricer(**kw: object) -> Pricer:
    args: dict[str, object] = dict(
        grid_g_per_kwh=475.0,
        carbon_source="world",
        pue=1.2,
        electricity_usd_per_kwh=0.15,
        hardware_usd_per_hour=0.36,
        prices=dict(REFERENCE_PRICES),
        reference=REF,
        reference_profile=Profile(REF.name, 0.5, 2.0, "measured", "bench"),
    )
    args.update(kw)
    return Pricer(**args)  # type: ignore[arg-type]


FACTS = dict(id="r1", created_at=1.0, endpoint="chat", stream=False, status="ok", ttft_s=0.1)


def test_local_receipt_arithmetic() -> None:
    p = pricer()
    r = p.make(
        spec=SMOL,
        energy=Energy(36.0, "estimated", "cpu", "formula"),
        tokens=(100, 10),
        duration_s=2.0,
        **FACTS,
    )
    kwh = 36.0 / J_PER_KWH
    assert r.co2_g == pytest.approx(kwh * 475 * 1.2)
    assert r.cost_usd == pytest.approx(kwh * 1.2 * 0.15 + 0.36 * 2 / 3600)
    assert r.baseline_model == REF.name
    assert r.baseline_energy_j == pytest.approx(100 * 0.5 + 10 * 2.0)
    assert r.saved_energy_j == pytest.approx(70.0 - 36.0)
    assert r.saved_co2_g == pytest.approx(r.baseline_co2_g - r.co2_g)  # type: ignore[operator]
    assert r.energy_method == "estimated" and r.pue == 1.2
    pub = r.public()
    assert pub["energy"]["energy_j"] == 36.0 and pub["savings"]["energy_j"] == r.saved_energy_j
    headers = r.headers()
    assert headers["x-smallfirst-energy-method"] == "estimated"
    assert float(headers["x-smallfirst-co2-g"]) == pytest.approx(r.co2_g, rel=1e-5)


def test_hosted_reference_prices_the_baseline() -> None:
    gpt4o = REFERENCE_PRICES["gpt-4o"]
    p = pricer(reference=HOSTED, reference_profile=None)
    r = p.make(
        spec=SMOL, energy=Energy(1.0, "estimated"), tokens=(1000, 500), duration_s=1.0, **FACTS
    )
    assert r.baseline_cost_usd == pytest.approx(gpt4o.cost_usd(1000, 500))
    assert r.baseline_cost_usd == pytest.approx((1000 * 2.5 + 500 * 10.0) / 1e6)
    assert r.baseline_energy_j is None and r.saved_energy_j is None  # unknown, not zero
    assert r.saved_cost_usd == pytest.approx(r.baseline_cost_usd - r.cost_usd)  # type: ignore[operator]
    assert "no energy profile" in (r.baseline_source or "")


def test_remote_model_cost_from_price_and_unknown_energy() -> None:
    p = pricer(prices={"gpt-4o": Price(2.0, 8.0, "2025", "test")})
    r = p.make(
        spec=HOSTED,
        energy=Energy(None, "unknown", note="no profile"),
        tokens=(10, 10),
        duration_s=1.0,
        **FACTS,
    )
    assert r.cost_usd == pytest.approx((10 * 2 + 10 * 8) / 1e6)
    assert r.energy_j is None and r.co2_g is None and r.energy_note == "no profile"
    assert r.headers()["x-smallfirst-energy-j"] == "unknown"


def test_failed_requests_claim_no_savings() -> None:
    r = pricer().make(
        spec=SMOL,
        energy=Energy(5.0, "estimated"),
        tokens=None,
        duration_s=1.0,
        **{**FACTS, "status": "cancelled"},
    )
    assert r.saved_energy_j is None and r.prompt_tokens is None and r.energy_j == 5.0
