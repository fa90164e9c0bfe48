"""Shared fixtures: the data directory with real models, and a real gateway on loopback.

Models are the real ladder GGUFs, pulled by ``make test`` (``smallfirst models pull``) into
the data directory; a test whose model is missing fails with a message saying how to get it
rather than silently skipping.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from smallfirst.catalog import Catalog
from smallfirst.server.app import create_app
from smallfirst.settings import Settings, default_data_dir

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Poll ``url`` until it answers 200; fail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args!r} did not come up at {url}")
        time.sleep(0.1)


class LiveServer:
    """A uvicorn server running ``create_app(settings)`` in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


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
