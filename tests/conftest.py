"""Shared fixtures: the data directory with real models, and a real gateway on loopback.

Models are the real ladder GGUFs, pulled by ``make test`` (``smallfirst models pull``) into
the data directory; a test whose model is missing fails with a message saying how to get it
rather than silently skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smallfirst.catalog import Catalog
from smallfirst.pg_cluster import Cluster, ClusterError
from smallfirst.settings import Settings, default_data_dir
from smallfirst.testing import LiveServer, free_port, wait_until_up

# Re-exported: the tests import these helpers from here.
__all__ = [
    "QWEN",
    "SMOL",
    "LiveServer",
    "free_port",
    "models_data_dir",
    "require_models",
    "wait_until_up",
]

SMOL = "smollm2-135m-instruct"
QWEN = "qwen2.5-coder-0.5b-instruct"


def models_data_dir() -> Path:
    return Path(os.environ.get("SMALLFIRST_DATA_DIR") or default_data_dir())


def require_models(settings: Settings, *names: str) -> None:
    catalog = Catalog(settings)
    missing = [n for n in names if not catalog.is_installed(catalog.get(n))]
    if missing:
        pytest.fail(
            f"models not installed in {settings.data_dir}: {missing}; "
            f"run `smallfirst models pull {' '.join(missing)}` (make test does this)"
        )


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # Models come from the shared data directory; state (receipts) goes to a fresh one.
    s = Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        models_dir=models_data_dir() / "models",
        default_model=SMOL,
        n_ctx=2048,
        # "auto" without a fitted router means default_model here, so that tests of other
        # features are not steered by the packaged router; tests of it turn it on.
        default_router=False,
        # Tests of other features must reach the engine; the cache would answer their
        # repeated greedy requests. tests/server/test_cache_hits.py turns it on.
        response_cache=False,
    )
    require_models(s, SMOL)
    return s


@pytest.fixture(scope="session")
def gateway(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings) as server:
        yield server


@pytest.fixture(scope="session")
def client(gateway: LiveServer):  # type: ignore[no-untyped-def]
    import openai

    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def upstream(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    catalog = Catalog(settings)
    port = free_port()
    # a file, not a pipe: llama.cpp logs a lot, and a full pipe would block the server
    log = (tmp_path_factory.mktemp("upstream") / "server.log").open("w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(catalog.file_path(catalog.get(SMOL))),
            "--model_alias",
            "smol-upstream",
            "--n_ctx",
            "2048",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        try:
            wait_until_up(url + "/models", proc)
        except RuntimeError:
            log.seek(0)
            raise RuntimeError(f"llama_cpp.server did not start: {log.read()[-2000:]}") from None
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the session (``smallfirst.pg_cluster``). One that
    cannot start fails the test with the reason; PostgreSQL is never skipped."""
    try:
        cluster = Cluster()
        with cluster:
            yield cluster
    except ClusterError as exc:
        pytest.fail(f"cannot start the test PostgreSQL cluster: {exc}", pytrace=False)
