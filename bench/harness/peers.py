"""llama.cpp's own `llama-server` and `llama-batched-bench`, built from the llama.cpp we run.

The peers of the serving benchmarks must be the same llama.cpp as our engine, so they are
built from the sources vendored in the llama-cpp-python sdist of the installed version
(``pip download --no-binary``, then ``vendor/llama.cpp``), with the flags llama-cpp-python's
own build uses by default (Release, native CPU, OpenMP), and cached outside the repository
in ``~/.cache/smallfirst/peers/llama-cpp-python-<version>/`` (``SMALLFIRST_PEERS_DIR``
overrides it). A build takes about 15 minutes on 2 cores; later calls find the binaries.

It builds and finds binaries; it runs no benchmark.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PEER_TARGETS", "Peers", "ensure_peers", "peers_dir"]

log = logging.getLogger(__name__)

PEER_TARGETS = ("llama-server", "llama-batched-bench")


@dataclass(frozen=True)
class Peers:
    """Where the built peer binaries are, and which llama-cpp-python they come from."""

    version: str
    bin_dir: Path

    @property
    def server(self) -> Path:
        return self.bin_dir / "llama-server"

    @property
    def batched_bench(self) -> Path:
        return self.bin_dir / "llama-batched-bench"

    def server_command(
        self, gguf: Path, *, port: int, threads: int, n_ctx: int, extra: Sequence[str] = ()
    ) -> list[str]:
        """``llama-server`` on 127.0.0.1:``port`` with ``gguf``, ``threads`` threads for
        prompt and decode alike, an ``n_ctx`` context in all, then ``extra`` flags."""
        return [
            str(self.server),
            "-m", str(gguf),
            "--host", "127.0.0.1",
            "--port", str(port),
            "-c", str(n_ctx),
            "-t", str(threads),
            "-tb", str(threads),
            *extra,
        ]  # fmt: skip


def peers_dir(version: str | None = None) -> Path:
    """The cache folder for the peers built from llama-cpp-python ``version``."""
    version = version or importlib.metadata.version("llama-cpp-python")
    root = os.environ.get("SMALLFIRST_PEERS_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "smallfirst" / "peers"
    return base / f"llama-cpp-python-{version}"


def _run(cmd: list[str], cwd: Path, log_path: Path) -> None:
    print(f"  $ {' '.join(cmd)}", flush=True)
    with log_path.open("a") as out:
        done = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
        raise SystemExit(f"peer build step failed ({done.returncode}):\n" + "\n".join(tail))


def _sdist(version: str, into: Path, log_path: Path) -> Path:
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--dest",
            str(into),
            f"llama-cpp-python=={version}",
        ],
        into,
        log_path,
    )
    found = sorted(into.glob("llama_cpp_python-*.tar.gz"))
    if not found:
        raise SystemExit(f"pip download left no llama-cpp-python {version} sdist in {into}")
    return found[0]


def _extract_llama_cpp(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name]
        tar.extractall(into, members=members, filter="data")
    roots = list(into.glob("*/vendor/llama.cpp"))
    if not roots:
        raise SystemExit(f"{sdist.name} holds no vendor/llama.cpp")
    return roots[0]


def ensure_peers(version: str | None = None, *, jobs: int | None = None) -> Peers:
    """The peer binaries for ``version`` (the installed one by default), built if missing."""
    version = version or importlib.metadata.version("llama-cpp-python")
    target = peers_dir(version)
    peers = Peers(version, target / "bin")
    if all((peers.bin_dir / name).is_file() for name in PEER_TARGETS):
        return peers
    target.mkdir(parents=True, exist_ok=True)
    log_path = target / "build.log"
    print(f"building {', '.join(PEER_TARGETS)} from llama-cpp-python {version}'s llama.cpp")
    print(f"  (about 15 minutes on 2 cores; log: {log_path})", flush=True)
    with tempfile.TemporaryDirectory(prefix="peers-", dir=target) as tmp:
        work = Path(tmp)
        source = _extract_llama_cpp(_sdist(version, work, log_path), work)
        build = work / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        _run(
            [
                "cmake",
                "-S",
                str(source),
                "-B",
                str(build),
                *generator,
                "-DCMAKE_BUILD_TYPE=Release",
                "-DBUILD_SHARED_LIBS=OFF",
                "-DLLAMA_CURL=OFF",
                "-DLLAMA_BUILD_TESTS=OFF",
                "-DLLAMA_BUILD_EXAMPLES=ON",
                "-DLLAMA_BUILD_TOOLS=ON",
                "-DLLAMA_BUILD_SERVER=ON",
                "-DGGML_NATIVE=ON",
            ],
            work,
            log_path,
        )
        _run(
            [
                "cmake",
                "--build",
                str(build),
                "--config",
                "Release",
                "-j",
                str(jobs or os.cpu_count() or 2),
                "--target",
                *PEER_TARGETS,
            ],
            work,
            log_path,
        )
        peers.bin_dir.mkdir(parents=True, exist_ok=True)
        for name in PEER_TARGETS:
            built = next(build.rglob(name), None)
            if built is None or not built.is_file():
                raise SystemExit(f"the build made no {name}; see {log_path}")
            shutil.copy2(built, peers.bin_dir / name)
    return peers
