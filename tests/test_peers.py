"""The llama-server build's checks and progress, without building anything (the build
itself runs once per machine, through the llama-server tier's tests and bench/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from smallfirst.errors import PeerBuildError
from smallfirst.peers import (
    NO_AMX_FLAGS,
    PEER_TARGETS,
    _configure_command,
    _progress_line,
    _run,
    ensure_peers,
    missing_tools,
    peers_dir,
)

pytestmark = pytest.mark.fast


def test_progress_is_reported_once_per_tenth_of_the_build() -> None:
    assert _progress_line("[  5%] Building C object ggml.c.o", 0) is None
    assert _progress_line("[ 12%] Building C object ggml.c.o", 0) == 12
    assert _progress_line("[ 15%] Building CXX object llama.cpp.o", 12) is None
    assert _progress_line("[45/180] Building CXX object x.o", 12) == 25  # ninja's steps
    assert _progress_line("-- Configuring done", 0) is None


def test_peers_and_engine_are_built_without_amx_alike(tmp_path: Path) -> None:
    """The peers' cmake line and the Makefile's CMAKE_ARGS (llama-cpp-python's build) leave
    ggml's AMX kernels out in the same words: the engine and its peers run the same kernels."""
    cmd = _configure_command(tmp_path / "src", tmp_path / "build")
    assert set(NO_AMX_FLAGS) <= set(cmd) and "-DGGML_NATIVE=ON" in cmd
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert f"export CMAKE_ARGS ?= {' '.join(NO_AMX_FLAGS)}\n" in makefile
    import llama_cpp  # the engine this checkout installed: built by the Makefile

    assert b"AMX_INT8 = 1" not in llama_cpp.llama_print_system_info()


def test_cached_binaries_are_found_without_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMALLFIRST_PEERS_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", "")  # no cmake, no compiler: nothing may be built
    bin_dir = peers_dir("9.9.9") / "bin"
    bin_dir.mkdir(parents=True)
    for name in PEER_TARGETS:
        (bin_dir / name).write_text("")
    heard: list[str] = []
    peers = ensure_peers("9.9.9", progress=heard.append)
    assert peers.server == bin_dir / "llama-server" and heard == []


def test_a_machine_without_cmake_or_a_compiler_is_told_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMALLFIRST_PEERS_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CXX", raising=False)
    assert missing_tools() == ["cmake", "a C++ compiler (c++, g++ or clang++)"]
    with pytest.raises(PeerBuildError, match="apt-get install cmake build-essential"):
        ensure_peers("9.9.9")
    assert not list(tmp_path.iterdir())  # it stopped before making anything


def test_a_build_step_is_logged_its_progress_relayed_and_its_failure_shown(
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "build.log"
    lines = [f"[{p:3d}%] Building CXX object o{p}.o" for p in range(0, 101, 5)]
    script = "import sys\n" + "".join(f"print({line!r})\n" for line in lines)
    script += "sys.stdout.buffer.write(b'bad byte \\xff\\n')\n"  # not UTF-8: must not crash
    heard: list[str] = []
    _run([sys.executable, "-c", script], tmp_path, log_path, heard.append)
    assert heard[0].startswith("$ ") and heard[1:] == [f"  {p}% built" for p in range(10, 101, 10)]
    assert log_path.read_text(errors="replace").count("Building CXX") == len(lines)
    failing = [sys.executable, "-c", "print('error: no member named foo'); raise SystemExit(2)"]
    with pytest.raises(PeerBuildError, match=r"failed \(2\)(.|\n)*error: no member named foo"):
        _run(failing, tmp_path, log_path, heard.append)
