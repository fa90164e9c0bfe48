"""The OpenMP wait: the ``openmp_spin_count`` setting reaches libgomp's variable, before any
llama.cpp import, and an operator's own variables win. Each case runs in a fresh interpreter:
libgomp reads its environment once, and this test process may have loaded it already."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SETUP = """
import os, sys
from smallfirst.catalog import Catalog
from smallfirst.engines.pool import EnginePool
from smallfirst.settings import Settings
s = Settings(data_dir=sys.argv[1], openmp_spin_count=int(sys.argv[2]))
EnginePool(Catalog(s), s)
print(os.environ.get("GOMP_SPINCOUNT"), "llama_cpp" in sys.modules)
"""


def run(tmp_path: object, spin: int, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run(
        [sys.executable, "-c", SETUP, str(tmp_path), str(spin)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


@pytest.mark.fast
def test_the_pool_sets_the_configured_spin_before_llama_cpp_loads(tmp_path: object) -> None:
    assert run(tmp_path, 1000) == ["1000", "False"]
    assert run(tmp_path, 30000) == ["30000", "False"]


@pytest.mark.fast
def test_the_operators_environment_wins(tmp_path: object) -> None:
    assert run(tmp_path, 30000, GOMP_SPINCOUNT="77") == ["77", "False"]
    assert run(tmp_path, 30000, OMP_WAIT_POLICY="PASSIVE") == ["None", "False"]
