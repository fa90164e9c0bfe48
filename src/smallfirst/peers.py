"""llama.cpp's own `llama-server` and `llama-batched-bench`, built from the llama.cpp we run.

`llama-server` is both a peer of the serving benchmarks and a tier the gateway can route to
(docs/llama-server.md); either way it must be the same llama.cpp as our engine, so both are
built from the sources vendored in the llama-cpp-python sdist of the installed version
(``pip download --no-binary``, then ``vendor/llama.cpp``), with the flags llama-cpp-python's
own build uses by default (Release, native CPU, OpenMP) less AMX, as the Makefile builds our
engine (:data:`NO_AMX_FLAGS`), and cached outside the repository in
``~/.cache/smallfirst/peers/llama-cpp-python-<version>-noamx/`` (``SMALLFIRST_PEERS_DIR``
overrides the parent). A build takes 8-15 minutes on 2 cores; later calls find the binaries.

This is the one copy of that build: ``bench/`` (the benchmarks, ``bench/build_peers.py``)
and ``tests/`` (the llama-server tier's tests) both call :func:`ensure_peers`. Nothing in
the gateway imports it. It checks for cmake and a C++ compiler before it starts, reports
its progress through a callback (the compile's percentages, about every tenth), and raises
:class:`~smallfirst.errors.PeerBuildError` with the log's tail when a step fails. It builds
and finds binaries; it starts no server and runs no benchmark.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from smallfirst.errors import PeerBuildError

__all__ = ["NO_AMX_FLAGS", "PEER_TARGETS", "Peers", "ensure_peers", "missing_tools", "peers_dir"]

log = logging.getLogger(__name__)

PEER_TARGETS = ("llama-server", "llama-batched-bench")

# A native build on a CPU that reports AMX compiles ggml's AMX kernels in, and on VMs whose
# hypervisor does not hand AMX state over, their first tile instruction (ldtilecfg) kills the
# process with a general protection fault. Undefining the macro leaves them out; every other
# native kernel (AVX-512, the weight repacking) stays. The Makefile's CMAKE_ARGS do the same
# for llama-cpp-python, so that peers and engine run the same kernels.
NO_AMX_FLAGS = ("-DCMAKE_C_FLAGS=-U__AMX_INT8__", "-DCMAKE_CXX_FLAGS=-U__AMX_INT8__")

Progress = Callable[[str], None]

# cmake's "[ 42%] Building ..." and ninja's "[12/180] Building ..."
_PERCENT = re.compile(r"^\[\s*(\d+)%\]")
_STEPS = re.compile(r"^\[(\d+)/(\d+)\]")


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
    return base / f"llama-cpp-python-{version}-noamx"


def missing_tools() -> list[str]:
    """What the build needs and this machine lacks (on Debian: ``apt-get install cmake
    build-essential``)."""
    missing = [] if shutil.which("cmake") else ["cmake"]
    if not any(shutil.which(cxx) for cxx in (os.environ.get("CXX") or "c++", "g++", "clang++")):
        missing.append("a C++ compiler (c++, g++ or clang++)")
    return missing


def _progress_line(line: str, last: int) -> int | None:
    """The build's percentage on ``line`` when it passed the next tenth since ``last``."""
    if m := _PERCENT.match(line):
        percent = int(m.group(1))
    elif m := _STEPS.match(line):
        percent = 100 * int(m.group(1)) // max(1, int(m.group(2)))
    else:
        return None
    return percent if percent // 10 > last // 10 else None


def _run(cmd: list[str], cwd: Path, log_path: Path, progress: Progress) -> None:
    """``cmd`` with its output in ``log_path``; the compile's progress every tenth."""
    progress(f"$ {' '.join(cmd)}")
    last = 0
    # errors="replace": a compiler's message may quote bytes that are not UTF-8
    with (
        log_path.open("a") as out,
        subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, errors="replace"
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            percent = _progress_line(line, last)
            if percent is not None:
                last = percent
                progress(f"  {percent}% built")
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
        raise PeerBuildError(
            f"peer build step failed ({proc.returncode}); log {log_path}:\n" + "\n".join(tail)
        )


def _sdist(version: str, into: Path, log_path: Path, progress: Progress) -> Path:
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
        progress,
    )
    found = sorted(into.glob("llama_cpp_python-*.tar.gz"))
    if not found:
        raise PeerBuildError(f"pip download left no llama-cpp-python {version} sdist in {into}")
    return found[0]


def _extract_llama_cpp(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name]
        tar.extractall(into, members=members, filter="data")
    roots = list(into.glob("*/vendor/llama.cpp"))
    if not roots:
        raise PeerBuildError(f"{sdist.name} holds no vendor/llama.cpp")
    return roots[0]


def _configure_command(source: Path, build: Path) -> list[str]:
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    return [
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
        *NO_AMX_FLAGS,
    ]


def ensure_peers(
    version: str | None = None, *, jobs: int | None = None, progress: Progress | None = None
) -> Peers:
    """The peer binaries for ``version`` (the installed one by default), built if missing;
    ``progress`` hears the build's steps (default: this module's log at INFO)."""
    report: Progress = progress or log.info
    version = version or importlib.metadata.version("llama-cpp-python")
    target = peers_dir(version)
    peers = Peers(version, target / "bin")
    if all((peers.bin_dir / name).is_file() for name in PEER_TARGETS):
        return peers
    if missing := missing_tools():
        raise PeerBuildError(
            f"building llama-server needs {' and '.join(missing)}; on Debian: "
            "apt-get install cmake build-essential"
        )
    target.mkdir(parents=True, exist_ok=True)
    log_path = target / "build.log"
    report(f"building {', '.join(PEER_TARGETS)} from llama-cpp-python {version}'s llama.cpp")
    report(f"  (8-15 minutes on 2 cores, once; log: {log_path})")
    with tempfile.TemporaryDirectory(prefix="peers-", dir=target) as tmp:
        work = Path(tmp)
        source = _extract_llama_cpp(_sdist(version, work, log_path, report), work)
        build = work / "build"
        _run(_configure_command(source, build), work, log_path, report)
        cores = str(jobs or os.cpu_count() or 2)
        build_cmd = ["cmake", "--build", str(build), "--config", "Release", "-j", cores]
        _run([*build_cmd, "--target", *PEER_TARGETS], work, log_path, report)
        peers.bin_dir.mkdir(parents=True, exist_ok=True)
        for name in PEER_TARGETS:
            built = next(build.rglob(name), None)
            if built is None or not built.is_file():
                raise PeerBuildError(f"the build made no {name}; see {log_path}")
            shutil.copy2(built, peers.bin_dir / name)
    report(f"built {', '.join(PEER_TARGETS)} in {peers.bin_dir}")
    return peers
