"""``auto`` with the router shipped in the package, through the real server and real models.

The packaged router is fitted on the committed evaluation baseline (``bench/
fit_default_router.sh``), so this is the out-of-the-box behaviour a new user gets. The whole
chat ladder is installed (``make test`` pulls it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smallfirst.catalog import Catalog
from smallfirst.routing import artifact as ra
from smallfirst.settings import Settings
from tests.conftest import QWEN, SMOL, LiveServer, require_models

QWEN_15 = "qwen2.5-coder-1.5b-instruct"
LADDER = [SMOL, QWEN, QWEN_15]  # smallest first

EASY = [
    "Hi! How are you today?",
    "Write a one-line Python function that returns the square of x.",
]
HARD = (
    "A bakery sells muffins for $3 each and cookies for $1.50 each. On Monday it sold 48 "
    "muffins and twice as many cookies. On Tuesday it sold 25% fewer muffins than on Monday "
    "and 30 more cookies than on Monday. How much money did the bakery make on the two days "
    "together?"
)


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    require_models(settings, *LADDER)
    fresh = tmp_path_factory.mktemp("default-router")  # no locally fitted router here
    updated = settings.model_copy(update={"data_dir": fresh, "default_router": True})
    with LiveServer(updated) as live:
        yield live


def ask(server: LiveServer, content: str, model: str = "auto") -> dict[str, Any]:
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    receipt: dict[str, Any] = r.json()["smallfirst"]
    return receipt


def test_the_packaged_router_routes_through_the_server(server: LiveServer) -> None:
    # What the shipped router does today, asserted so that a refit that changes it shows up.
    # The acceptance (easy prompts to a smaller tier than hard math) is NOT met at
    # the default policy: every ladder model is weak on the committed benchmarks, so `auto`
    # (quality 0.95) keeps almost everything on the reference, and small talk, unlike any
    # benchmark item, looks like the short ARC questions the 1.5B model wins (see the #5
    # notes). What holds: hard math never goes to SmolLM2, whose predicted P(correct) on it
    # is the lowest of the three, and every receipt names the router that decided.
    easy = [ask(server, prompt) for prompt in EASY]
    hard = ask(server, HARD)
    assert hard["model"] != SMOL, hard["route"]
    assert hard["route"]["scores"][SMOL] < min(hard["route"]["scores"][m] for m in LADDER[1:])
    for r in [*easy, hard]:
        route = r["route"]
        assert route["strategy"] == "predictive" and route["policy"] == "auto"
        assert route["router"] == f"package:{ra.DEFAULT_RESOURCE}"
        assert set(route["scores"]) == set(LADDER)
        assert route["why"] and 0 <= route["predicted_quality"] <= 1
    # the stored receipt says the same as the response
    stored = httpx.get(server.url + f"/smallfirst/v1/receipts/{hard['receipt_id']}").json()
    assert stored["model"] == hard["model"] and stored["route"] == hard["route"]


def test_a_cheaper_policy_moves_prompts_down_the_ladder(server: LiveServer) -> None:
    # the same prompts under a tight energy budget: never a dearer model than under auto
    for prompt in [*EASY, HARD]:
        strict = ask(server, prompt)["model"]
        cheap = ask(server, prompt, "auto:energy=0.3")["model"]
        assert LADDER.index(cheap) <= LADDER.index(strict), prompt


def test_the_packaged_router_is_a_fallback(settings: Settings, tmp_path: Path) -> None:
    from smallfirst.engines.pool import EnginePool
    from smallfirst.server.choosing import Chooser

    default = ra.load_default()
    assert default is not None
    pool = EnginePool(Catalog(settings), settings)
    off = Chooser(settings.model_copy(update={"data_dir": tmp_path}), pool)
    assert off.artifact is None and off.source is None  # default_router=False in the tests
    enabled = settings.model_copy(update={"data_dir": tmp_path, "default_router": True})
    on = Chooser(enabled, pool)
    assert on.artifact is not None and on.source == f"package:{ra.DEFAULT_RESOURCE}"
    assert on.artifact.to_json() == default.to_json()
    ra.save(default, tmp_path)  # a router fitted locally wins over the packaged one
    local = Chooser(enabled, pool)
    assert local.source == str(tmp_path / "routers" / ra.LATEST)
