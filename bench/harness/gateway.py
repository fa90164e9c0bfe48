"""``smallfirst serve`` as a child process: its command line, its config file, its models.

A benchmark that talks to the gateway starts it through :func:`running_gateway`, which picks
a free port, writes the TOML config file, starts the process (stopped when the block ends,
see :mod:`harness.procs`) and waits until ``/health`` answers. The gateway is the installed
console script next to this interpreter, so it runs the same code as the script.

This module measures nothing and sends no request but the warm-up of :func:`load_model`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harness.procs import Child
from smallfirst.catalog import Catalog
from smallfirst.errors import UnknownModelError
from smallfirst.replicas import Value, write_config
from smallfirst.settings import Settings
from smallfirst.testing import free_port

__all__ = [
    "LADDER_DEFAULT",
    "SMALLFIRST_BIN",
    "STORY_PROMPT",
    "ConfigValue",
    "Gateway",
    "gateway_command",
    "load_model",
    "model_path",
    "running_gateway",
    "write_gateway_config",
]

# The console script installed next to the interpreter (the venv's bin/).
SMALLFIRST_BIN = str(Path(sys.executable).with_name("smallfirst"))

LADDER_DEFAULT = (
    "smollm2-135m-instruct",
    "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-coder-1.5b-instruct",
)
STORY_PROMPT = "Write a long story about a lighthouse keeper."

ConfigValue = Value


def model_path(name: str) -> Path:
    """The GGUF file of catalog model ``name``; exits with a hint when it is not pulled."""
    catalog = Catalog(Settings())
    try:
        spec = catalog.get(name)
    except UnknownModelError as exc:
        raise SystemExit(f"bench: {exc}") from None
    path = catalog.file_path(spec)
    if path is None or not catalog.is_installed(spec):
        raise SystemExit(f"bench: {name} is not installed; run `smallfirst models pull {name}`")
    return path


def write_gateway_config(
    path: Path,
    settings: Mapping[str, ConfigValue],
    models: Sequence[Mapping[str, ConfigValue]] = (),
) -> Path:
    """A TOML config file for ``smallfirst serve --config`` (flat values only)."""
    return write_config(path, settings, models)


def gateway_command(
    *,
    port: int,
    default_model: str | None = None,
    threads: int | None = None,
    config: Path | None = None,
) -> list[str]:
    """The ``smallfirst serve`` command line on 127.0.0.1:``port``."""
    cmd = [SMALLFIRST_BIN, "serve", "--host", "127.0.0.1", "--port", str(port)]
    if default_model is not None:
        cmd += ["--default-model", default_model]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if config is not None:
        cmd += ["--config", str(config)]
    return cmd


@dataclass(frozen=True)
class Gateway:
    """A running ``smallfirst serve`` child and where it answers."""

    child: Child
    port: int
    command: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (ending in /v1)."""
        return self.url + "/v1"


@contextlib.contextmanager
def running_gateway(
    log_dir: Path,
    *,
    name: str = "gateway",
    default_model: str | None = None,
    settings: Mapping[str, ConfigValue] | None = None,
    models: Sequence[Mapping[str, ConfigValue]] = (),
    threads: int | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 120.0,
) -> Iterator[Gateway]:
    """Start ``smallfirst serve`` (config and log in ``log_dir``), wait for ``/health``.

    ``settings`` and ``models`` go into a ``--config`` file named after ``name`` (the
    response cache is off unless ``settings`` turns it on); the process is stopped when the
    block ends, however it ends.
    """
    port = free_port()
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)
    # Benchmarks measure the path to a model and repeat greedy requests: the response cache
    # would answer those from memory. Only a script that measures the cache turns it on.
    settings = {"response_cache": False, **(settings or {})}
    config = write_gateway_config(log_dir / f"{stem}.toml", settings, models)
    cmd = gateway_command(port=port, default_model=default_model, threads=threads, config=config)
    with Child(name, cmd, log_path=log_dir / f"{stem}.log", env=env) as child:
        gateway = Gateway(child, port, cmd)
        child.wait_ready(gateway.url + "/health", ready_timeout_s)
        yield gateway


def load_model(client: httpx.Client, model: str) -> None:
    """One tiny request, so that ``model`` is loaded (and warm) before anything is timed.

    ``client`` has the gateway's root URL as its base.
    """
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    client.post("/v1/chat/completions", json=body).raise_for_status()
