"""Gateway replicas as separate processes on loopback: N ``smallfirst serve`` children that
share one database and one data directory, for the tests and the benchmarks of issue #18.

:class:`Replicas` writes nothing but starts ``python -m smallfirst.cli serve`` ``n`` times,
each on its own free port with the same ``--config`` file, waits until every one answers
``/health``, and stops them all when its block ends (SIGTERM, then SIGKILL); :meth:`kill`
is the ``kill -9`` of one of them mid-load. :func:`write_config` writes that TOML file:
flat settings, ``[[models]]`` tables and ``[profiles.<model>]`` tables. A child runs the
code this interpreter imports (its ``sys.path`` goes along as ``PYTHONPATH``), so a
worktree's tests exercise the worktree.

There is no load balancer here: callers spread their requests over :attr:`Replicas.urls`
themselves (round-robin). Like :mod:`smallfirst.testing`, this is public so that ``tests/``
and ``bench/`` share one copy, and nothing under the gateway imports it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

from smallfirst.testing import free_port, wait_until_up

__all__ = ["Replica", "Replicas", "Value", "write_config"]

Value = str | int | float | bool | list[str]


def _toml(v: Value) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(json.dumps(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def write_config(
    path: Path,
    settings: Mapping[str, Value],
    models: Sequence[Mapping[str, Value]] = (),
    profiles: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """A TOML file for ``smallfirst serve --config``: top-level ``settings``, one
    ``[[models]]`` table per model and one ``[profiles.<name>]`` table per profile."""
    lines = [f"{k} = {_toml(v)}" for k, v in settings.items()]
    for name, profile in (profiles or {}).items():
        lines += ["", f"[profiles.{json.dumps(name)}]"]
        lines += [f"{k} = {_toml(v)}" for k, v in profile.items()]
    for model in models:
        lines += ["", "[[models]]", *(f"{k} = {_toml(v)}" for k, v in model.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def _die_with_parent() -> None:
    """Run in the child before exec: SIGTERM when the parent dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Replica:
    """One ``smallfirst serve`` child: its port, process and log file."""

    def __init__(self, index: int, config: Path, log_dir: Path, env: Mapping[str, str]) -> None:
        self.index = index
        self.port = free_port()
        self.log_path = log_dir / f"replica-{index}.log"
        command = [sys.executable, "-m", "smallfirst.cli", "serve", "--config", str(config)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,  # Ctrl-C in a terminal reaches only the caller
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 10.0) -> None:
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            if not self.alive():
                return
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait_s)


class Replicas:
    """``with Replicas(3, config, log_dir) as r: r.urls``: ``n`` gateways, all up.

    The config file is each replica's whole configuration: this process's ``SMALLFIRST_*``
    variables are not passed on, since settings from the environment would override it (as
    ``make test`` exports ``SMALLFIRST_DATA_DIR``, which gave the replicas another data
    directory, so another ``keys.secret``, than the test's). ``env`` adds to the rest of this
    process's environment in each child.
    """

    def __init__(
        self,
        n: int,
        config: Path,
        log_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        start_timeout_s: float = 90.0,
    ) -> None:
        self.n = n
        self.config = config
        self.log_dir = log_dir
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("SMALLFIRST_")}
        self.env = {**inherited, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
        self.start_timeout_s = start_timeout_s
        self.replicas: list[Replica] = []

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    @property
    def pids(self) -> list[int]:
        """The process ids of the replicas still alive (for their CPU time from /proc)."""
        return [r.pid for r in self.replicas if r.alive()]

    def __getitem__(self, i: int) -> Replica:
        return self.replicas[i]

    def kill(self, i: int) -> None:
        """``kill -9`` replica ``i``: no drain, no shutdown, its open requests cut."""
        replica = self.replicas[i]
        replica.proc.send_signal(signal.SIGKILL)
        replica.proc.wait(timeout=10)

    def __enter__(self) -> Self:
        try:
            # all started before any is waited for: they import and open the store together
            for i in range(self.n):
                self.replicas.append(Replica(i, self.config, self.log_dir, self.env))
            for r in self.replicas:
                try:
                    wait_until_up(r.url + "/health", r.alive, self.start_timeout_s)
                except RuntimeError as exc:
                    raise RuntimeError(f"replica {r.index}: {exc}:\n{r.log_tail()}") from None
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for r in self.replicas:
            with contextlib.suppress(ProcessLookupError):
                r.proc.send_signal(signal.SIGTERM)  # all asked at once, then each waited for
        for r in self.replicas:
            r.stop()

    def __exit__(self, *exc: object) -> None:
        self.stop()
