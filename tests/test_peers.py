"""The llama-server build's checks and progress, without building anything (the build
itself runs once per machine, through the llama-server tier's tests and bench/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smallfirst.errors import PeerBuildError
from smallfirst.peers import PEER_TARGETS, _progress_line, ensure_peers, missing_tools, peers_dir

pytestmark = pytest.mark.fast


def test_progress_is_reported_once_per_tenth_of_the_build() -> None:
    assert _progress_line("[  5%] Building C object ggml.c.o", 0) is None
    assert _progress_line("[ 12%] Building C object ggml.c.o", 0) == 12
    assert _progress_line("[ 15%] Building CXX object llama.cpp.o", 12) is None
    assert _progress_line("[45/180] Building CXX object x.o", 12) == 25  # ninja's steps
    assert _progress_line("-- Configuring done", 0) is None


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
