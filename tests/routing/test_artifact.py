"""The router artifact: saved atomically, loaded back to an identical router, versioned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smallfirst.routing import artifact as ra
from smallfirst.routing.artifact import ArtifactError, RouterArtifact
from smallfirst.routing.policy import BUDGET_GRID, QUALITY_GRID, Policy
from smallfirst.routing.training.scores import TUNED
from smallfirst.types import Message
from tests.routing.synthetic import synthetic

POLICIES = [Policy("quality", q) for q in (0.5, 0.9, 0.95, 0.999, 1.0)] + [
    Policy("energy", e) for e in (0.01, 0.3, 0.77, 1.0)
]


def test_round_trip_gives_an_identical_router(artifact: RouterArtifact, tmp_path: Path) -> None:
    path = ra.save(artifact, tmp_path)
    assert path.parent == tmp_path / "routers" and path.name.startswith("router-")
    latest = tmp_path / "routers" / "router-latest.json"
    assert latest.read_text() == path.read_text()
    # nothing half-written is left behind
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, latest.name])

    loaded = ra.load_latest(tmp_path)
    assert loaded is not None
    assert loaded.to_json() == artifact.to_json()
    assert loaded.candidates == artifact.candidates
    assert loaded.heldout_keys == artifact.heldout_keys
    _, prompts = synthetic(60, seed=9)
    messages = list(prompts.values())
    for spec in ("predictive", "predictive:bar", "cascade", "cascade:output"):
        for policy in POLICIES:
            a, b = artifact.router(spec, policy), loaded.router(spec, policy)
            for m in messages:
                assert a.decide(m, artifact.candidates) == b.decide(m, loaded.candidates)


def test_the_file_says_what_it_is(artifact: RouterArtifact, tmp_path: Path) -> None:
    data = json.loads(ra.save(artifact, tmp_path).read_text())
    assert data["format"] == "smallfirst-router" and data["format_version"] == 1
    assert data["feature_spec_version"] == 1
    assert data["training_run_ids"] == ["synth"]
    assert data["reference_model"] == "medium-m"
    assert [c["tier"] for c in data["candidates"]] == ["XS", "S", "M"]
    assert all(c["energy_j_per_item"] > 0 for c in data["candidates"])
    assert set(data["predictive"]) == {"tiny-xs", "small-s", "medium-m"}
    assert set(data["verifiers"]) == {"tiny-xs", "small-s"}
    assert set(data["calibration"]) == set(TUNED)
    grid = data["thresholds"]["predictive"]
    assert [g["target"] for g in grid if g["kind"] == "quality"] == list(QUALITY_GRID)
    assert [g["target"] for g in grid if g["kind"] == "energy"] == list(BUDGET_GRID)
    # the grid is what the router calibrates to
    for g in grid[::7]:
        policy = Policy(g["kind"], g["target"])
        assert artifact.threshold("predictive", policy) == g["threshold"]
    metrics = data["heldout_metrics"]
    names = [s["name"] for s in metrics["strategies"]]
    assert {"predictive", "random", "oracle", "tiny-xs"} <= set(names)
    assert data["training"]["n_train"] + data["training"]["n_heldout"] == 600


def test_two_saves_keep_both_and_point_latest_at_the_second(
    artifact: RouterArtifact, tmp_path: Path
) -> None:
    first = ra.save(artifact, tmp_path)
    second = ra.save(artifact, tmp_path)
    assert first != second and first.exists() and second.exists()
    assert (tmp_path / "routers" / ra.LATEST).read_text() == second.read_text()


def test_refuses_other_formats_versions_and_features(
    artifact: RouterArtifact, tmp_path: Path
) -> None:
    assert ra.load_latest(tmp_path) is None
    good = artifact.to_json()
    for change, message in (
        ({"format": "something"}, "not a smallfirst router"),
        ({"format_version": 2}, "not supported"),
        ({"feature_spec_version": 0}, "router fit"),
        ({"candidates": good["candidates"][:1]}, "two candidates"),
        ({"predictive": {"x": {"mean": [1]}}}, "malformed"),
    ):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(ArtifactError, match=message):
            ra.load(path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ArtifactError, match="cannot read"):
        ra.load(tmp_path / "bad.json")


def test_router_from_artifact_and_policy(artifact: RouterArtifact) -> None:
    candidates = list(artifact.candidates)
    messages = (Message(role="user", content="What is 2 + 2?"),)
    loose = artifact.router("predictive", Policy("quality", 0.5))
    strict = artifact.router("predictive", Policy("quality", 1.0))
    order = [c.name for c in candidates]
    assert order.index(loose.decide(messages, candidates).model) <= order.index(
        strict.decide(messages, candidates).model
    )
    with pytest.raises(ArtifactError, match="no calibration"):
        artifact.threshold("oracle")
    assert [c.name for c in ra.candidates_for(artifact, ["medium-m", "tiny-xs", "gpt"])] == [
        "tiny-xs",
        "medium-m",
    ]


def test_gzipped_form_round_trips(artifact: RouterArtifact, tmp_path: Path) -> None:
    path = tmp_path / "router.json.gz"
    ra.write_default(artifact, path)
    first = path.read_bytes()
    assert ra.load(path).to_json() == artifact.to_json()
    ra.write_default(artifact, path)
    assert path.read_bytes() == first  # same router, same bytes (no timestamp in the gzip)


@pytest.mark.fast
def test_a_corrupt_gzip_is_an_artifact_error(tmp_path: Path) -> None:
    path = tmp_path / "router.json.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ArtifactError, match="cannot read router file"):
        ra.load(path)


@pytest.mark.fast
def test_the_package_ships_a_default_router() -> None:
    default = ra.load_default()
    assert default is not None, "run bench/fit_default_router.sh"
    names = [c.name for c in default.candidates]
    assert names[0] == "smollm2-135m-instruct" and names[-1] == "qwen2.5-coder-1.5b-instruct"
    assert "baseline" in default.training_run_ids and default.heldout_keys
