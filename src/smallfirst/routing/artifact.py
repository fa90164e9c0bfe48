"""The fitted router as a versioned JSON artifact in the data directory.

One file holds everything a gateway needs to route and everything a person needs to judge
the router: the format and its version, when it was made, the evaluation runs it was trained
on, the feature spec version, the candidates (cheapest first) with their mean energy and
cost per item, the per-model logistic weights (predictive, and the cascade's answer
verifiers), the per-model energy regressions (:mod:`.predictors`), the calibration sweeps
(out-of-fold on the training split) from which any policy's threshold is calibrated
exactly, a table of calibrated thresholds for a grid of targets (derived from the sweeps;
written for people and dashboards, ignored when loading), the held-out split's item keys,
and the held-out metrics.

Files: ``<data_dir>/routers/router-<UTC timestamp>.json`` plus a copy named
``router-latest.json``; both are written to a temporary file in the same folder, flushed to
disk and renamed into place, so a reader sees the old file or the new one, never half of
one. Floats are written with Python's ``repr`` (shortest round-trip), so loading gives back
exactly the numbers that were saved and the same decisions.

A default router ships inside the package (``routing/default_router.json.gz``, fitted on the
committed evaluation baseline by ``bench/fit_default_router.sh``), so ``auto`` routes before
anyone has run ``router fit``; a router fitted locally always takes precedence over it.

Loading refuses another format, a newer format version, or a different feature spec
version (the weights would be applied to features they were not trained on): retrain with
``smallfirst router fit``.

This module saves, loads and answers "which threshold for this policy"; it fits nothing and
imports nothing of :mod:`smallfirst.routing.training`, the evaluation harness or the store,
so loading a router at request time stays light.
"""

from __future__ import annotations

import datetime as dt
import gzip
import importlib.resources
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from smallfirst.errors import ArtifactError
from smallfirst.routing.base import Candidate, Router
from smallfirst.routing.features import FEATURE_SPEC_VERSION
from smallfirst.routing.policy import (
    DEFAULT_POLICY,
    Calibration,
    Policy,
    Sweep,
    calibrate,
    calibration_grid,
)
from smallfirst.routing.predictors import LogisticModel, SpendModel
from smallfirst.routing.registry import DEFAULT_STRATEGY, RouterContext, make_router

__all__ = [
    "DEFAULT_RESOURCE",
    "FORMAT",
    "FORMAT_VERSION",
    "LATEST",
    "ArtifactError",
    "ItemKey",
    "RouterArtifact",
    "candidates_for",
    "load",
    "load_default",
    "load_latest",
    "now_iso",
    "routers_dir",
    "save",
    "write_default",
]

ItemKey = tuple[str, str]  # (benchmark, item_id)

FORMAT: Final = "smallfirst-router"
FORMAT_VERSION: Final = 1
LATEST: Final = "router-latest.json"
DEFAULT_RESOURCE: Final = "default_router.json.gz"


@dataclass(frozen=True, eq=False)
class RouterArtifact:
    created_at: str  # ISO 8601, UTC
    training_run_ids: tuple[str, ...]
    candidates: tuple[Candidate, ...]  # cheapest first; the last is the reference
    predictive: Mapping[str, LogisticModel]
    verifiers: Mapping[str, LogisticModel]
    calibration: Mapping[str, Sweep]  # per tuned strategy
    seed: int
    heldout_fraction: float
    # per-prompt energy models (files written before them route on average spend)
    spend: Mapping[str, SpendModel] = field(default_factory=dict)
    heldout_keys: tuple[ItemKey, ...] = ()
    heldout_metrics: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    feature_spec_version: int = FEATURE_SPEC_VERSION

    @property
    def reference(self) -> str:
        return self.candidates[-1].name

    @property
    def strategies(self) -> tuple[str, ...]:
        return tuple(self.calibration)

    def calibrate(self, strategy: str, policy: Policy = DEFAULT_POLICY) -> Calibration:
        curve = self.calibration.get(strategy)
        if curve is None:
            raise ArtifactError(
                f"the router artifact has no calibration for {strategy!r}; "
                f"it has {', '.join(self.calibration) or 'none'}"
            )
        return calibrate(curve, policy)

    def threshold(self, strategy: str, policy: Policy = DEFAULT_POLICY) -> float:
        return self.calibrate(strategy, policy).threshold

    def router(self, spec: str = DEFAULT_STRATEGY, policy: Policy | None = None) -> Router:
        """The router ``spec`` names, with its threshold calibrated for ``policy``."""
        return make_router(spec, RouterContext(artifact=self, policy=policy))

    def grid(self) -> dict[str, list[dict[str, Any]]]:
        return {
            s: [c.to_json() for c in calibration_grid(curve)]
            for s, curve in self.calibration.items()
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": self.created_at,
            "training_run_ids": list(self.training_run_ids),
            "feature_spec_version": self.feature_spec_version,
            "seed": self.seed,
            "heldout_fraction": self.heldout_fraction,
            "candidates": [
                {
                    "name": c.name,
                    "tier": c.tier,
                    "energy_j_per_item": c.energy_j_per_item,
                    "cost_usd_per_item": c.cost_usd_per_item,
                }
                for c in self.candidates
            ],
            "reference_model": self.reference,
            "predictive": {name: m.to_json() for name, m in self.predictive.items()},
            "verifiers": {name: m.to_json() for name, m in self.verifiers.items()},
            "spend": {name: m.to_json() for name, m in self.spend.items()},
            "calibration": {s: curve.to_json() for s, curve in self.calibration.items()},
            "thresholds": self.grid(),
            "training": dict(self.training),
            "heldout_keys": [list(k) for k in self.heldout_keys],
            "heldout_metrics": dict(self.heldout_metrics),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RouterArtifact:
        if data.get("format") != FORMAT:
            raise ArtifactError(f"not a smallfirst router file (format {data.get('format')!r})")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise ArtifactError(
                f"router file format version {version!r} is not supported (this smallfirst "
                f"reads up to {FORMAT_VERSION}); upgrade smallfirst or refit the router"
            )
        features = data.get("feature_spec_version")
        if features != FEATURE_SPEC_VERSION:
            raise ArtifactError(
                f"router was trained on feature spec {features!r}, this smallfirst computes "
                f"spec {FEATURE_SPEC_VERSION}; run `smallfirst router fit` again"
            )
        try:
            candidates = tuple(
                Candidate(
                    name=str(c["name"]),
                    tier=str(c["tier"]),
                    energy_j_per_item=_optional_float(c.get("energy_j_per_item")),
                    cost_usd_per_item=_optional_float(c.get("cost_usd_per_item")),
                )
                for c in data["candidates"]
            )
            if len(candidates) < 2:
                raise ArtifactError("a router file needs at least two candidates")
            return cls(
                created_at=str(data["created_at"]),
                training_run_ids=tuple(str(r) for r in data["training_run_ids"]),
                candidates=candidates,
                predictive={n: LogisticModel.from_json(m) for n, m in data["predictive"].items()},
                verifiers={n: LogisticModel.from_json(m) for n, m in data["verifiers"].items()},
                spend={n: SpendModel.from_json(m) for n, m in (data.get("spend") or {}).items()},
                calibration={s: Sweep.from_json(c) for s, c in data["calibration"].items()},
                seed=int(data["seed"]),
                heldout_fraction=float(data["heldout_fraction"]),
                heldout_keys=tuple((str(b), str(i)) for b, i in data.get("heldout_keys", [])),
                heldout_metrics=dict(data.get("heldout_metrics") or {}),
                training=dict(data.get("training") or {}),
                feature_spec_version=int(features),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"malformed router file: {exc!r}") from exc


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def routers_dir(data_dir: Path) -> Path:
    return data_dir / "routers"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _write_atomic(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as tmp:
        tmp.write(text)
        tmp.flush()
        os.fsync(tmp.fileno())
        # temporary files are private (0600); a router file is ordinary data
        os.fchmod(tmp.fileno(), 0o644)
    try:
        Path(tmp.name).replace(path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise


def save(artifact: RouterArtifact, data_dir: Path) -> Path:
    """Write ``router-<timestamp>.json`` and ``router-latest.json``; return the first."""
    folder = routers_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # allow_nan=False: an artifact with NaN would not be JSON that other tools can read
    text = json.dumps(artifact.to_json(), indent=1, allow_nan=False) + "\n"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    path = folder / f"router-{stamp}.json"
    suffix = 1
    while path.exists():
        suffix += 1
        path = folder / f"router-{stamp}-{suffix}.json"
    _write_atomic(path, text)
    _write_atomic(folder / LATEST, text)
    return path


def _parse(raw: bytes, where: str) -> RouterArtifact:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read router file {where}: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{where} is not a router file")
    return RouterArtifact.from_json(data)


def load(path: Path) -> RouterArtifact:
    """A router file, plain JSON or gzipped (``.gz``)."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ArtifactError(f"cannot read router file {path}: {exc}") from exc
    return _parse(raw, str(path))


def load_latest(data_dir: Path) -> RouterArtifact | None:
    """The latest fitted router, or ``None`` when none has been fitted yet."""
    path = routers_dir(data_dir) / LATEST
    if not path.exists():
        return None
    return load(path)


def load_default() -> RouterArtifact | None:
    """The router shipped in the package, or ``None`` if this install has none."""
    resource = importlib.resources.files("smallfirst.routing").joinpath(DEFAULT_RESOURCE)
    if not resource.is_file():
        return None
    return _parse(gzip.decompress(resource.read_bytes()), f"package:{DEFAULT_RESOURCE}")


def write_default(artifact: RouterArtifact, path: Path) -> None:
    """Write ``artifact`` gzipped and compact (the packaged default's form)."""
    text = json.dumps(artifact.to_json(), separators=(",", ":"), allow_nan=False)
    # mtime=0: the same router gives the same bytes, so git sees no change on a refit
    path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))


def candidates_for(artifact: RouterArtifact, available: Sequence[str]) -> list[Candidate]:
    """The artifact's candidates that are ``available`` now, cheapest first."""
    names = set(available)
    return [c for c in artifact.candidates if c.name in names]
