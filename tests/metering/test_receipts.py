"""Carbon, cost, baseline and savings arithmetic, and the receipt's two shapes."""

from __future__ import annotations

import dataclasses

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


def test_an_unpriced_remote_model_costs_its_profiles_energy_as_if_self_hosted() -> None:
    # llama-server on the operator's own machine: no price per token, but joules from its
    # profile, which cost what the gateway's own would
    server = dataclasses.replace(HOSTED, name="llama-server-tier")
    kw = dict(tokens=(100, 10), duration_s=2.0, **FACTS)
    r = pricer().make(spec=server, energy=Energy(36.0, "profile"), **kw)  # type: ignore[arg-type]
    kwh = 36.0 / J_PER_KWH
    assert r.cost_usd == pytest.approx(kwh * 1.2 * 0.15 + 0.36 * 2 / 3600)
    assert (r.cost_method or "").startswith("no price configured: as self-hosted, energy")
    unknown = pricer().make(spec=server, energy=Energy(None, "unknown"), **kw)  # type: ignore[arg-type]
    assert unknown.cost_usd is None  # no price and no joules: unknown, never a silent zero
    assert unknown.cost_method == "no price configured for this remote model"


def test_failed_requests_claim_no_savings() -> None:
    r = pricer().make(
        spec=SMOL,
        energy=Energy(5.0, "estimated"),
        tokens=None,
        duration_s=1.0,
        **{**FACTS, "status": "cancelled"},
    )
    assert r.saved_energy_j is None and r.prompt_tokens is None and r.energy_j == 5.0


def test_answered_by_the_reference_saves_exactly_nothing() -> None:
    # the report: three "Hello!" answered by the reference showed -204% saved,
    # because a busy machine's actual joules were set against the quiet-machine profile
    p = pricer()
    busy = Energy(3.04 * (10 * 0.5 + 5 * 2.0), "estimated")  # 3.04x the profile's figure
    r = p.make(spec=REF, energy=busy, tokens=(10, 5), duration_s=1.0, **FACTS)
    assert r.baseline_rule == "answered-by-reference"
    assert r.saved_energy_j == 0.0 and r.saved_cost_usd == 0.0 and r.saved_co2_g == 0.0
    assert r.baseline_energy_j == r.energy_j and r.baseline_cost_usd == r.cost_usd
    assert r.public()["baseline"]["rule"] == "answered-by-reference"


def test_two_local_models_scale_the_actual_energy_by_their_profiles() -> None:
    smol = Profile(SMOL.name, 0.1, 0.25, "measured", "bench")
    p = pricer(profile_of={SMOL.name: smol}.get)
    tokens = (100, 10)
    ratio = (100 * 0.5 + 10 * 2.0) / (100 * 0.1 + 10 * 0.25)
    for actual in (12.5, 40.0):  # quiet, then busy: the saved share stays the same
        r = p.make(
            spec=SMOL, energy=Energy(actual, "estimated"), tokens=tokens, duration_s=1.0, **FACTS
        )
        assert r.baseline_rule == "profile-ratio"
        assert r.baseline_energy_j == pytest.approx(actual * ratio)
        assert r.saved_energy_j == pytest.approx(actual * ratio - actual)
        assert r.saved_energy_j / r.baseline_energy_j == pytest.approx(1 - 1 / ratio)  # type: ignore[operator]
        assert "profiles" in (r.baseline_source or "")


def test_a_missing_profile_or_a_cascade_falls_back_to_the_reference_profile() -> None:
    smol = Profile(SMOL.name, 0.1, 0.25, "measured", "bench")
    for p, like in ((pricer(), True), (pricer(profile_of={SMOL.name: smol}.get), False)):
        r = p.make(
            spec=SMOL,
            energy=Energy(36.0, "estimated"),
            tokens=(100, 10),
            duration_s=1.0,
            like_for_like=like,
            **FACTS,
        )
        assert r.baseline_rule == "reference-profile"
        assert r.baseline_energy_j == pytest.approx(70.0)
    # a cascade ending on the reference still shows what its earlier attempts cost
    r = pricer().make(
        spec=REF,
        energy=Energy(90.0, "estimated"),
        tokens=(100, 10),
        duration_s=1.0,
        like_for_like=False,
        **FACTS,
    )
    assert r.baseline_rule == "reference-profile" and r.saved_energy_j == pytest.approx(-20.0)


def test_hosted_reference_names_the_price_rule() -> None:
    r = pricer(reference=HOSTED, reference_profile=None).make(
        spec=SMOL, energy=Energy(1.0, "estimated"), tokens=(10, 10), duration_s=1.0, **FACTS
    )
    assert r.baseline_rule == "hosted-price"
    r = pricer(reference=None).make(
        spec=SMOL, energy=Energy(1.0, "estimated"), tokens=(10, 10), duration_s=1.0, **FACTS
    )
    assert r.baseline_rule == "none" and r.saved_energy_j is None
