"""Child processes that are always stopped, and the signal handling every script installs.

Every child started through :class:`Child` is registered; it is stopped when its ``with``
block ends, and whatever is still alive is killed at interpreter exit (normal exit, an
exception, Ctrl-C, or SIGTERM/SIGHUP, which :func:`install_signal_handlers` turns into
``SystemExit``). On Linux the children also get ``PR_SET_PDEATHSIG`` so that they die with
the script even if it is killed with SIGKILL.

This module starts and stops processes; it does not know what they are (see
:mod:`harness.gateway`) and measures nothing but their CPU time.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType

from harness import REPO_DIR
from smallfirst.testing import wait_until_up

__all__ = [
    "Child",
    "install_signal_handlers",
    "process_cpu_seconds",
    "scratch_dir",
]

_LIVE: set[Child] = set()


def _pdeathsig() -> None:
    """Run in the child before exec: die with SIGTERM when the parent dies (Linux)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)[:40]


class Child:
    """A subprocess that is stopped (SIGTERM, then SIGKILL) when the block ends, always.

    The child runs in its own session, so Ctrl-C in the terminal reaches only the script,
    which stops it in order. Its stdout and stderr go to ``log_path`` (never to an undrained
    pipe) unless ``capture_stdout`` is set, in which case stdout is a pipe read by
    :meth:`communicate`.
    """

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        capture_stdout: bool = False,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.env = dict(os.environ if env is None else env)
        self.capture_stdout = capture_stdout
        if log_path is None:
            fd, tmp = tempfile.mkstemp(prefix=f"bench-{_slug(name)}-", suffix=".log")
            os.close(fd)
            log_path = Path(tmp)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Child:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.capture_stdout else log,
                stderr=log,
                env=self.env,
                cwd=REPO_DIR,
                start_new_session=True,
                preexec_fn=_pdeathsig if sys.platform.startswith("linux") else None,
            )
        finally:
            log.close()
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def communicate(self, timeout_s: float) -> str:
        """Wait for a ``capture_stdout`` child to exit; its stdout (raises on failure)."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} has not been started")
        out, _ = self.proc.communicate(timeout=timeout_s)
        if self.proc.returncode != 0:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )
        return out.decode("utf-8", errors="replace")

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process (all its threads) has used so far."""
        return process_cpu_seconds(self.pid)

    def stop(self, grace_s: float = 10.0) -> None:
        proc = self.proc
        _LIVE.discard(self)
        if proc is None or proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)  # its own session: the group is just it (and kids)
            try:
                proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def wait_ready(self, url: str, timeout_s: float = 120.0) -> None:
        """Poll ``url`` until it answers 200; fail early, with the log's tail, if it dies."""
        try:
            wait_until_up(url, self.alive, timeout_s)
        except RuntimeError as exc:
            raise RuntimeError(f"{self.name}: {exc}:\n{self.log_tail()}") from None


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc (0.0 where /proc is not available)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


@atexit.register
def _kill_leftovers() -> None:
    for child in list(_LIVE):
        child.stop(grace_s=3.0)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise SystemExit so that every ``finally`` (and ``with``) runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary folder for logs, configs and data directories, deleted at the end."""
    with tempfile.TemporaryDirectory(prefix="smallfirst-bench-") as tmp:
        yield Path(tmp)
