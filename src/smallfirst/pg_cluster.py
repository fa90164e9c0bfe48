"""A throwaway PostgreSQL cluster for the tests and the benchmarks: initdb in a temporary
directory, pg_ctl on a free loopback port, run as an unprivileged user, removed afterwards.

Like :mod:`smallfirst.testing` it is public so that ``tests/`` and ``bench/`` share one
copy, and nothing under the gateway imports it. The tests run it with ``fsync`` off (fast;
a commit still reaches the OS before it returns, so a killed server loses nothing); a
benchmark that measures writes asks for PostgreSQL's default, ``fsync=True``.

PostgreSQL refuses to run as root, so under root (CI containers) the server runs as
``nobody`` through ``runuser``; the directory is made for that user. The binaries are
Debian's (``/usr/lib/postgresql/<version>/bin``, the newest installed) unless
``SMALLFIRST_PG_BIN`` names a directory. Authentication is ``trust`` on loopback only: the
cluster lives as long as the test session and holds nothing but test data.

If the cluster cannot be made or started, :class:`ClusterError` says why and how to get
PostgreSQL (``make test`` installs it): the tests fail, they never skip PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from smallfirst.testing import free_port

__all__ = ["Cluster", "ClusterError", "pg_bin"]

RUN_AS = "nobody"


class ClusterError(RuntimeError):
    pass


def pg_bin() -> Path:
    """The directory of initdb and pg_ctl."""
    named = os.environ.get("SMALLFIRST_PG_BIN")
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates = [Path(named)] if named else sorted(versions, key=lambda p: int(p.parent.name))
    for directory in reversed(candidates):
        if (directory / "initdb").exists():
            return directory
    raise ClusterError(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): the store's tests "
        "run on PostgreSQL too; `apt-get install -y postgresql` (make test does this)"
    )


class Cluster:
    """``with Cluster() as c: c.url(\"db\")``: a running server for the block's duration."""

    def __init__(self, *, fsync: bool = False) -> None:
        self.fsync = fsync
        self.bin = pg_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="smallfirst-pg-"))
        self.data = self.root / "data"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, user=RUN_AS)
            self._as_user = ["runuser", "-u", RUN_AS, "--"]

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise ClusterError(
                f"{' '.join(args[:2])} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )

    def start(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        self.run()

    def run(self) -> None:
        """Start the server on the existing cluster (again, after :meth:`halt`)."""
        # fsync off unless asked: a test cluster need not survive a power cut, and it saves
        # seconds; a commit still reaches the OS before it returns, so a killed server
        # loses nothing
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        if not self.fsync:
            options += " -c fsync=off -c full_page_writes=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-t", "60",
            "-l", str(self.root / "server.log"), "start",
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def halt(self) -> None:
        """Stop the server at once (connections cut), keeping the cluster to run again."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
