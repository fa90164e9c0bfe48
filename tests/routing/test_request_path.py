"""The request path stays light: routing with a saved router imports no training code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import smallfirst

OFFLINE = ("smallfirst.routing.training", "smallfirst.evals", "smallfirst.store")

SCRIPT = """
import json, sys
from smallfirst.routing import artifact
from smallfirst.routing.policy import parse_policy
from smallfirst.types import Message

fitted = artifact.load_default()
assert fitted is not None, "the package ships a default router"
messages = (Message(role="user", content="What is 2 + 3?"),)
candidates = artifact.candidates_for(fitted, [c.name for c in fitted.candidates])
models = []
for spec in ("predictive", "predictive:bar", "cascade", "cascade:output"):
    router = fitted.router(spec, parse_policy("auto:quality=0.9"))
    models.append(router.decide(messages, candidates).model)
print(json.dumps({"models": models, "loaded": sorted(sys.modules)}))
"""


def test_loading_and_deciding_imports_no_training_evals_or_store() -> None:
    # the same sources as this process, whatever the install
    src = str(Path(smallfirst.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    )
    report = json.loads(done.stdout)
    assert len(report["models"]) == 4
    offline = [m for m in report["loaded"] if m.startswith(OFFLINE)]
    assert offline == []
    # the check itself sees the package's modules: it would notice one
    assert "smallfirst.routing.registry" in report["loaded"]
