"""The chooser keeps a bounded set of built routers, however many policies clients send.

Uses the router shipped in the package and decides over its own candidates, so no model
needs to be installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smallfirst.catalog import Catalog
from smallfirst.engines.pool import EnginePool
from smallfirst.errors import PolicyError
from smallfirst.routing.artifact import candidates_for
from smallfirst.server.choosing import ROUTER_CACHE_SIZE, Chooser
from smallfirst.settings import Settings, UserModel
from smallfirst.types import Message
from tests.conftest import models_data_dir

PROMPT = (Message("user", "What is 17 * 23? Answer with the number."),)


def chooser(data_dir: Path) -> Chooser:
    settings = Settings(data_dir=data_dir, default_router=True)
    made = Chooser(settings, EnginePool(Catalog(settings), settings))
    assert made.artifact is not None, "the package ships a default router"
    return made


def decide(made: Chooser, name: str) -> tuple[str, dict[str, object]]:
    assert made.artifact is not None
    router, calibration = made.router_for(name)
    candidates = candidates_for(made.artifact, [c.name for c in made.artifact.candidates])
    return router.decide(PROMPT, candidates).model, calibration


def test_many_distinct_policies_keep_the_cache_bounded(tmp_path: Path) -> None:
    busy = chooser(tmp_path / "busy")
    names = [f"auto:quality={q / 1000:g}" for q in range(500, 1000, 7)]  # 72 policies
    names += [f"auto:energy={q / 100:g}" for q in range(5, 100, 9)]
    first = {name: decide(busy, name) for name in names}
    assert len(names) > 4 * ROUTER_CACHE_SIZE
    cached = busy.cached_policies()
    assert len(cached) == ROUTER_CACHE_SIZE and cached == names[-ROUTER_CACHE_SIZE:]
    # an evicted policy is rebuilt with the same answer; a fresh chooser agrees with both
    fresh = chooser(tmp_path / "fresh")
    for name in (names[0], names[len(names) // 2], names[-1]):
        assert decide(busy, name) == first[name] == decide(fresh, name)
    assert len(busy.cached_policies()) == ROUTER_CACHE_SIZE


def test_a_kept_policy_is_the_most_recently_used(tmp_path: Path) -> None:
    made = chooser(tmp_path)
    made.router_for("auto")
    for q in range(ROUTER_CACHE_SIZE - 1):
        made.router_for(f"auto:quality={0.5 + q / 100:g}")
    made.router_for("auto")  # used again: now the newest
    made.router_for("auto:quality=0.99")  # evicts the oldest, which is no longer "auto"
    assert "auto" in made.cached_policies()
    assert "auto:quality=0.5" not in made.cached_policies()


@pytest.mark.parametrize("name", ["auto:quality=2", "auto:speed=0.5", "cascade:quality=x"])
def test_a_malformed_policy_is_a_policy_error_naming_the_model(tmp_path: Path, name: str) -> None:
    made = chooser(tmp_path)
    with pytest.raises(PolicyError) as err:
        made.choose(name, PROMPT)
    assert err.value.param == "model"
    assert err.value.message.startswith(f"Invalid model policy {name!r}: ")
    assert made.cached_policies() == []


@pytest.mark.fast
def test_a_named_models_fallbacks_join_its_own_list_and_the_table_once_each(
    tmp_path: Path,
) -> None:
    mine = UserModel(name="mine", base_url="http://127.0.0.1:9/v1", fallbacks=("a", "mine", "b"))
    settings = Settings(
        data_dir=tmp_path,
        default_router=False,
        models=(mine,),
        fallbacks={"mine": ("b", "c"), "qwen2.5-coder-0.5b-instruct": ("mine",)},
    )
    made = Chooser(settings, EnginePool(Catalog(settings), settings))
    assert made.choose("mine", PROMPT).fallbacks == ("a", "b", "c")
    assert made.choose("other", PROMPT).fallbacks == ()
    # auto without a router is the default model, with the default model's fallbacks
    auto = made.choose("auto", PROMPT)
    assert (auto.model, auto.fallbacks) == ("qwen2.5-coder-0.5b-instruct", ("mine",))


def test_auto_falls_back_to_the_routers_next_best_candidates(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, models_dir=models_data_dir() / "models", default_router=True
    )
    made = Chooser(settings, EnginePool(Catalog(settings), settings))
    choice = made.choose("auto", PROMPT)
    assert choice.route is not None
    scores: dict[str, float] = choice.route["scores"]
    assert len(scores) >= 2, "needs at least two of the router's models installed"
    assert set(choice.fallbacks) == set(scores) - {choice.model}
    ranked = [scores[m] for m in choice.fallbacks]
    assert ranked == sorted(ranked, reverse=True)
    # the chosen model's configured fallbacks come before the router's other candidates
    configured = settings.model_copy(update={"fallbacks": {choice.model: ("spare",)}})
    again = Chooser(configured, EnginePool(Catalog(configured), configured))
    assert again.choose("auto", PROMPT).fallbacks == ("spare", *choice.fallbacks)
