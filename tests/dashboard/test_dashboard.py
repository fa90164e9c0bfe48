"""The dashboard: its data endpoints against the summary, and the page in headless Chromium.

Receipts and evaluation results are seeded straight into the database (no model runs), a
real gateway serves them (LiveServer), and Debian's Chromium, driven by Playwright, opens the
page: its headline numbers must equal ``/smallfirst/v1/summary`` for the same period, every
chart must draw data, the receipts table must have rows, and no request may leave the
gateway's origin.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smallfirst.dashboard.api import auto_bucket_s, pareto
from smallfirst.metering.receipts import Overhead, Receipt
from smallfirst.settings import Settings
from smallfirst.store.eval_results import EvalResult, EvalStore
from smallfirst.store.eval_summary import summarize
from smallfirst.store.sqlite import SqliteStore
from smallfirst.testing import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import SMOL, LiveServer, models_data_dir

# (model, tier, energy method): local models measured or estimated, a hosted one by profile,
# and one with no profile at all (energy unknown).
MODELS = [
    (SMOL, "XS", "estimated"),
    ("qwen2.5-coder-0.5b-instruct", "S", "measured"),
    ("qwen2.5-coder-1.5b-instruct", "M", "estimated"),
    ("gpt-4o", "remote", "profile"),
    ("remote:mystery", "remote", "unknown"),
]
EVAL_MODELS = {  # model: (accuracy, J per item)
    SMOL: (0.3, 2.0),
    "qwen2.5-coder-0.5b-instruct": (0.5, 8.0),
    "qwen2.5-coder-1.5b-instruct": (0.45, 30.0),  # dominated: dearer and less accurate
}


def make_receipt(i: int, created_at: float, rng: random.Random) -> Receipt:
    model, tier, method = MODELS[i % len(MODELS)]
    prompt, completion = rng.randint(5, 400), rng.randint(1, 200)
    energy = None if method == "unknown" else rng.uniform(0.5, 40.0)
    ok = i % 17 != 5
    base_energy = 0.05 * (prompt + completion)
    return Receipt(
        id=f"r{i}",
        created_at=created_at,
        endpoint="chat",
        model=model,
        tier=tier,
        engine="remote" if tier == "remote" else "llama.cpp",
        stream=bool(i % 2),
        status="ok" if ok else "error",
        prompt_tokens=prompt,
        completion_tokens=completion,
        duration_s=rng.uniform(0.1, 5.0),
        ttft_s=0.05,
        energy_j=energy,
        energy_method=method,
        energy_scope="process",
        energy_source="test",
        energy_note=None if energy is not None else "no profile",
        cpu_s=0.1,
        cost_usd=None if energy is None else energy * 4e-8,
        cost_method="test",
        co2_g=None if energy is None else energy * 1.3e-4,
        grid_g_per_kwh=475.0,
        pue=1.0,
        carbon_source="test",
        baseline_model="qwen2.5-coder-1.5b-instruct",
        baseline_energy_j=base_energy,
        baseline_cost_usd=base_energy * 4e-8,
        baseline_co2_g=base_energy * 1.3e-4,
        baseline_source="test profile",
        saved_energy_j=None if energy is None or not ok else base_energy - energy,
        saved_cost_usd=None if energy is None or not ok else (base_energy - energy) * 4e-8,
        saved_co2_g=None if energy is None or not ok else (base_energy - energy) * 1.3e-4,
        policy="auto:balanced" if i % 3 == 0 else None,
    )


def seed_receipts(db: Path, n: int = 400, now: float | None = None) -> list[Receipt]:
    """``n`` receipts over the last 23 hours, a quarter of them in the last hour."""
    now = time.time() if now is None else now
    rng = random.Random(7)
    receipts = [
        make_receipt(
            i, now - (rng.uniform(60, 3000) if i % 4 == 0 else rng.uniform(3700, 23 * 3600)), rng
        )
        for i in range(n)
    ]
    store = SqliteStore(db)
    store.add_many(sorted(receipts, key=lambda r: r.created_at))
    # two model loads, one in the last hour: overhead, billed to no request
    for ago, model in ((600.0, SMOL), (7200.0, "qwen2.5-coder-0.5b-instruct")):
        store.add_overhead(
            Overhead(now - ago, "model_load", model, 0.7, 3.5, "estimated", 0.6, 1e-7, 5e-4)
        )
    store.close()
    return receipts


def seed_evals(db: Path) -> list[EvalResult]:
    rng = random.Random(3)
    store = EvalStore(db)
    results = []
    for model, (accuracy, joules) in EVAL_MODELS.items():
        for benchmark in ("gsm8k", "mmlu"):
            for i in range(20):
                result = EvalResult(
                    run_id="t1",
                    benchmark=benchmark,
                    item_id=str(i),
                    model=model,
                    subject=None,
                    prompt_hash="h",
                    correct=i < accuracy * 20,
                    extracted=None,
                    detail=None,
                    output="an answer",
                    prompt_tokens=100,
                    completion_tokens=40,
                    duration_s=1.0,
                    energy_j=joules * rng.uniform(0.9, 1.1),
                    energy_method="estimated",
                    cost_usd=1e-6,
                    co2_g=1e-3,
                    created_at=time.time(),
                )
                store.add(result)
                results.append(result)
    store.close()
    return results


def dashboard_settings(data_dir: Path) -> Settings:
    # no model runs here: the models directory is only there for the catalog
    return Settings(data_dir=data_dir, models_dir=models_data_dir() / "models", default_model=SMOL)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("dashboard")
    settings = dashboard_settings(data_dir)
    seed_receipts(settings.db_path)
    seed_evals(settings.db_path)
    with LiveServer(settings) as server:
        yield server


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(dashboard_settings(tmp_path_factory.mktemp("dashboard-empty"))) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; `apt-get install -y chromium` (make test does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        yield chromium
        chromium.close()


def get(server: LiveServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.url + path, params=params, timeout=30)


class Page:
    """A dashboard page with every request and script error it caused recorded."""

    def __init__(self, browser: Any, server: LiveServer, period: str = "1d") -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.goto(f"{server.url}/dashboard#period={period}")
        self.page.wait_for_selector("body[data-refreshes]", timeout=30_000)

    def choose(self, period: str) -> None:
        self.page.click(f"#period button[data-period='{period}']")
        self.page.wait_for_function(
            "p => document.querySelector('#headline').dataset.period === p", arg=period
        )

    def headline(self) -> dict[str, Any]:
        # one evaluate: a refresh cannot land between reading two of the numbers
        return dict(
            self.page.evaluate(
                """() => {
                const head = document.querySelector('#headline');
                const fields = {};
                for (const n of head.querySelectorAll('[data-summary]')) {
                    fields[n.dataset.summary] = [n.dataset.value, n.textContent];
                }
                return {since: head.dataset.since, until: head.dataset.until, fields,
                        method: document.querySelector('#energy-method').textContent};
            }"""
            )
        )

    def count(self, selector: str) -> int:
        return int(self.page.locator(selector).count())

    def close(self) -> None:
        self.page.close()


def test_page_headline_equals_summary_charts_and_table(browser: Any, seeded: LiveServer) -> None:
    page = Page(browser, seeded)
    try:
        for period in ("1h", "1d", "all"):
            page.choose(period)
            shown = page.headline()
            since = json.loads(shown["since"])
            assert (since is None) == (period == "all")
            params = {} if since is None else {"since": repr(since)}
            total = get(seeded, "/smallfirst/v1/summary", **params).json()["total"]
            assert total["requests"] > 0
            fields = shown["fields"]
            assert {"requests", "energy_j", "co2_g", "cost_usd", "saved_energy_j"} <= set(fields)
            assert {"saved_energy_pct", "saved_cost_usd", "energy_measured_j"} <= set(fields)
            for key, (raw, text) in fields.items():
                assert json.loads(raw) == total[key], (period, key)
                assert text and text != "–", (period, key)
            # measured, estimated and profile energy all present: the total is "mixed"
            assert shown["method"] == "mixed"
            assert fields["energy_unknown"][1] == str(total["energy_unknown"])
            overhead = get(seeded, "/smallfirst/v1/summary", **params).json()["overhead"]
            shown_overhead = page.page.eval_on_selector_all(
                "[data-overhead]", "ns => ns.map(n => [n.dataset.overhead, n.dataset.value])"
            )
            assert {k: json.loads(v) for k, v in shown_overhead} == {
                "count": overhead["total"]["count"],
                "energy_j": overhead["total"]["energy_j"],
            }
            assert overhead["total"]["count"] == (1 if period == "1h" else 2)

            # every chart drew data
            assert page.count("#chart-requests rect.point") > 0
            assert page.count("#chart-energy rect.point") > 0
            per_tier: dict[str, int] = {}
            for m in get(seeded, "/smallfirst/v1/summary", **params).json()["models"]:
                per_tier[m["tier"]] = per_tier.get(m["tier"], 0) + m["requests"]
            bars = page.page.eval_on_selector_all(
                "#chart-tiers rect.point",
                "ns => ns.map(n => [n.dataset.tier, Number(n.dataset.requests), "
                "Number(n.dataset.share)])",
            )
            assert {t: n for t, n, _ in bars} == per_tier and len(bars) == 4
            assert sum(share for _, _, share in bars) == pytest.approx(1.0)
            assert page.count("#chart-frontier circle.point") == len(EVAL_MODELS)
            assert page.count("#chart-frontier polyline.frontier") == 1
            assert page.count("#chart-frontier .router") == 0  # no router results yet
            assert page.page.is_hidden("#empty-traffic") and page.page.is_hidden("#empty-evals")

            rows = page.page.locator("#latest tbody tr")
            assert rows.count() > 0
            routes = set(page.page.locator("#latest td.route").all_text_contents())
            assert routes == {"-", "auto:balanced"}

        # the dominated model is off the frontier
        assert (
            page.page.get_attribute(
                "#chart-frontier circle[data-model='qwen2.5-coder-1.5b-instruct']", "class"
            )
            == "point"
        )
        assert not page.errors
        foreign = [u for u in page.requests if not u.startswith(seeded.url + "/")]
        assert not foreign, foreign
    finally:
        page.close()


def test_page_refreshes_itself(browser: Any, seeded: LiveServer) -> None:
    page = Page(browser, seeded, period="1h")
    try:
        before = json.loads(page.headline()["fields"]["requests"][0])
        store = SqliteStore(seeded.settings.db_path)
        store.add_many([make_receipt(10_000, time.time(), random.Random(1))])
        store.close()
        page.page.wait_for_function(
            "n => JSON.parse(document.querySelector('[data-summary=requests]').dataset.value) > n",
            arg=before,
            timeout=15_000,
        )
        # one refresh at a time: each refresh asked for the summary once (none piled up)
        refreshes = int(page.page.get_attribute("body", "data-refreshes") or 0)
        summaries = [u for u in page.requests if "/smallfirst/v1/summary" in u]
        assert refreshes >= 2 and len(summaries) <= refreshes + 1
    finally:
        page.close()


def test_empty_states_explain_what_to_do(browser: Any, empty: LiveServer) -> None:
    page = Page(browser, empty)
    try:
        traffic = page.page.locator("#empty-traffic")
        assert traffic.is_visible()
        assert f"curl {empty.url}/v1/chat/completions" in traffic.inner_text()
        assert f'base_url="{empty.url}/v1"' in traffic.inner_text()
        evals = page.page.locator("#empty-evals")
        assert evals.is_visible() and "smallfirst eval run --models" in evals.inner_text()
        assert "--limit 20" in evals.inner_text()
        assert page.page.locator("#chart-requests .nodata").is_visible()
        assert page.count("svg .point") == 0
        assert json.loads(page.headline()["fields"]["requests"][0]) == 0
        assert page.page.locator("#batches-empty").is_visible()
        assert not page.errors
        assert all(u.startswith(empty.url + "/") for u in page.requests)
    finally:
        page.close()


@pytest.mark.fast
def test_timeseries_adds_up_to_the_summary(seeded: LiveServer) -> None:
    for since in ("1h", "1d", None):
        params = {"since": since} if since else {}
        summary = get(seeded, "/smallfirst/v1/summary", **params).json()
        series = get(seeded, "/smallfirst/v1/dashboard/timeseries", **params).json()
        assert series["object"] == "dashboard.timeseries"
        assert (series["end"] - series["start"]) / series["bucket_s"] <= 61
        by_model: dict[str, int] = {}
        for p in series["data"]:
            assert p["t"] % series["bucket_s"] == 0
            by_model[p["model"]] = by_model.get(p["model"], 0) + p["requests"]
        assert by_model == {m["model"]: m["requests"] for m in summary["models"]}
        energy = sum(p["energy_j"] for p in series["data"])
        assert energy == pytest.approx(summary["total"]["energy_j"])
    explicit = get(seeded, "/smallfirst/v1/dashboard/timeseries", since="1h", bucket=300).json()
    assert explicit["bucket_s"] == 300
    one = get(seeded, "/smallfirst/v1/dashboard/timeseries", model=SMOL).json()
    assert one["models"] == [SMOL]


@pytest.mark.fast
def test_frontier_is_the_report_summary(seeded: LiveServer) -> None:
    body = get(seeded, "/smallfirst/v1/dashboard/frontier").json()
    store = EvalStore(seeded.settings.db_path)
    expected = {r.model: r for r in summarize(store.results()) if r.benchmark == "all (macro)"}
    store.close()
    assert {m["model"] for m in body["models"]} == set(EVAL_MODELS)
    for m in body["models"]:
        assert m["accuracy"] == expected[m["model"]].accuracy
        assert m["energy_j_per_item"] == pytest.approx(expected[m["model"]].energy_j_per_item)
    on = {m["model"] for m in body["models"] if m["on_frontier"]}
    assert on == {SMOL, "qwen2.5-coder-0.5b-instruct"}
    assert body["router"] == [] and body["benchmarks"] == ["gsm8k", "mmlu"]
    assert get(seeded, "/smallfirst/v1/dashboard/frontier", run="nope").json()["models"] == []
    assert get(seeded, "/smallfirst/v1/dashboard/frontier").json() == body  # cached, same


@pytest.mark.fast
@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/smallfirst/v1/dashboard/timeseries", {"bucket": "0"}, "bucket"),
        ("/smallfirst/v1/dashboard/timeseries", {"bucket": "ten"}, "bucket"),
        ("/smallfirst/v1/dashboard/timeseries", {"since": "1d", "bucket": "1"}, "bucket"),
        ("/smallfirst/v1/dashboard/timeseries", {"since": "soon"}, "since"),
        ("/smallfirst/v1/dashboard/timeseries", {"colour": "red"}, "colour"),
        ("/smallfirst/v1/dashboard/timeseries", {"since": "2h", "until": "3h"}, "since"),
        ("/smallfirst/v1/summary", {"bucket": "60"}, "bucket"),
        ("/smallfirst/v1/dashboard/frontier", {"since": "1h"}, "since"),
    ],
)
def test_bad_parameters_are_openai_400s(
    seeded: LiveServer, path: str, params: dict[str, str], param: str
) -> None:
    r = get(seeded, path, **params)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


@pytest.mark.fast
def test_page_and_assets_are_served_from_the_package(seeded: LiveServer) -> None:
    for path in ("/", "/dashboard"):
        r = get(seeded, path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "/dashboard/static/dashboard.js" in r.text and "http" not in r.text.split("<body")[0]
    for name, kind in (
        ("dashboard.js", "text/javascript"),
        ("dashboard.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ):
        r = get(seeded, f"/dashboard/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    assert get(seeded, "/dashboard/static/../api.py").status_code == 404
    assert get(seeded, "/dashboard/static/secret.txt").status_code == 404
    meta = get(seeded, "/smallfirst/v1/dashboard/meta").json()
    assert meta["reference_model"] == seeded.settings.reference_model


@pytest.mark.fast
def test_summary_uses_the_covering_index(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "s.db").close()
    conn = sqlite3.connect(tmp_path / "s.db")
    plan = " ".join(
        row[3]
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT model, tier, COUNT(*), SUM(energy_j), SUM(saved_co2_g) "
            "FROM receipts GROUP BY model, tier"
        )
    )
    conn.close()
    assert "COVERING INDEX receipts_model_tier_cover" in plan and "TEMP B-TREE" not in plan


@pytest.mark.fast
def test_auto_bucket_and_pareto() -> None:
    assert auto_bucket_s(3600.01) == 60
    assert auto_bucket_s(86400) == 1800
    assert auto_bucket_s(0) == 1
    assert auto_bucket_s(400 * 86400) % 604800 == 0
    assert 400 * 86400 / auto_bucket_s(400 * 86400) <= 61
    assert pareto([(1.0, 0.3), (2.0, 0.5), (3.0, 0.4), (2.0, 0.5)]) == [True, True, False, True]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """A gateway with an admin key and one receipt made with another key."""
    import dataclasses

    from smallfirst.store.keys import KeySpec, KeyStore

    settings = dashboard_settings(tmp_path_factory.mktemp("dashboard-keyed"))
    store = SqliteStore(settings.db_path)
    receipt = make_receipt(1, time.time() - 60, random.Random(3))
    store.add(dataclasses.replace(receipt, key_id="key_0123456789ab", key_name="team-a"))
    store.close()
    keys = KeyStore(settings.db_path, settings.data_dir)
    _, secret = keys.create(KeySpec(name="dash-admin", admin=True))
    keys.close()
    with LiveServer(settings) as server:
        yield server, secret


def test_page_asks_for_an_admin_key_and_breaks_traffic_down_by_key(
    browser: Any, keyed: tuple[LiveServer, str]
) -> None:
    server, secret = keyed
    assert get(server, "/smallfirst/v1/dashboard/meta").status_code == 401
    page = browser.new_page()
    prompts: list[str] = []

    def answer(dialog: Any) -> None:
        prompts.append(dialog.message)
        dialog.accept(secret)

    page.on("dialog", answer)
    try:
        page.goto(f"{server.url}/dashboard#period=1d")
        page.wait_for_selector("body[data-refreshes]", timeout=30_000)
        assert prompts and "admin API key" in prompts[0]
        assert page.evaluate("sessionStorage.getItem('smallfirst.apiKey')") == secret
        assert page.is_visible("#by-key")
        assert "team-a" in page.locator("#keys tbody").inner_text()
    finally:
        page.close()


def test_page_lists_batches_with_their_carbon(browser: Any, tmp_path: Path) -> None:
    """A finished batch (stored as the runner leaves one) in the batches table: progress,
    the hour it ran in, and gCO2 as run against at submission and the worst hours."""
    from smallfirst.store.batches import BatchStore, LineRef
    from smallfirst.store.database import open_backend

    settings = dashboard_settings(tmp_path)
    db = open_backend(settings.db_path)
    store = BatchStore(db)
    plan = {"at_once": False, "reason": "waits for the 1 best hours",
            "hours": ["2026-01-01T03:00:00Z"],
            "submission_g_per_kwh": 400.0, "worst_g_per_kwh": 800.0}  # fmt: skip
    store.create(
        {"id": "batch_seen", "key_id": None, "endpoint": "/v1/chat/completions",
         "input_file_id": "file-x", "completion_window": "24h", "status": "in_progress",
         "created_at": time.time(), "expires_at": time.time() + 86400, "plan": json.dumps(plan)},
        [LineRef(1, "a", 0, 1), LineRef(2, "b", 2, 1)],
    )  # fmt: skip
    for line in store.claim("batch_seen", 2, "r", lease_s=60):
        receipt = {"receipt_id": line.custom_id, "carbon": {"co2_g": 0.05, "grid_g_per_kwh": 50},
                   "energy": {"energy_j": 3600.0}}  # fmt: skip
        store.finish(line, ok=True, output={}, receipt=receipt)
    store.move("batch_seen", "completed", since=("in_progress",))
    db.close()
    with LiveServer(settings) as server:
        page = Page(browser, server)
        try:
            row = page.page.locator("#batches tr[data-batch-id='batch_seen']")
            cells = [c.strip() for c in row.locator("td").all_inner_texts()]
            assert cells[1:4] == ["batch_seen", "completed", "2 / 2"]
            assert cells[4] != "at once" and ":00" in cells[4]  # the hour it was planned in
            assert cells[5:] == ["0.1 g", "0.8 g", "1.6 g"]  # 2 Wh at 50, 400, 800 g/kWh
            assert not page.page.locator("#batches-empty").is_visible()
            assert not page.errors
        finally:
            page.close()
