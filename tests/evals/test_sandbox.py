"""The sandbox runs hostile programs to a verdict and leaves the test process unharmed.

Every test ends by checking (autouse fixture) that this process still has its pid, process
group, session and open descriptors, and can still run a trivial program.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smallfirst.evals import sandbox
from smallfirst.evals.sandbox import Limits, network_isolation, run_python

SMALL = Limits(timeout_s=5.0, cpu_s=5, memory_mb=256, max_processes=16, file_size_mb=1)
IS_ROOT = os.geteuid() == 0


def _open_fds() -> set[str]:
    return {fd.name for fd in Path("/proc/self/fd").iterdir()}


@pytest.fixture(autouse=True)
def unharmed() -> Iterator[None]:
    before = (os.getpid(), os.getpgrp(), os.getsid(0), _open_fds())
    yield
    assert (os.getpid(), os.getpgrp(), os.getsid(0), _open_fds()) == before
    after = run_python("print('still here')", SMALL)
    assert after.passed, after
    assert after.stdout == "still here\n"


def _live_processes(*, uid: int | None = None, pgid: int | None = None) -> list[int]:
    """Pids of non-zombie processes owned by ``uid`` or in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        if fields[0] in ("Z", "X"):
            continue
        real_uid = int(next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1])
        if (uid is not None and real_uid == uid) or (pgid is not None and int(fields[2]) == pgid):
            found.append(int(entry.name))
    return found


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_passing_program() -> None:
    result = run_python("import sys\nprint(sum(range(10)))\nprint('note', file=sys.stderr)", SMALL)
    assert result.passed
    assert (result.status, result.exit_code) == ("passed", 0)
    assert result.stdout == "45\n"
    assert result.stderr == "note\n"
    assert result.network in ("netns", "socket-guard")
    assert 0 < result.duration_s < SMALL.timeout_s


def test_failing_assert() -> None:
    result = run_python("def f(x):\n    return x + 1\n\nassert f(1) == 3, 'off by one'\n", SMALL)
    assert not result.passed
    assert (result.status, result.exit_code) == ("failed", 1)
    assert result.stderr.rstrip().endswith("AssertionError: off by one")


def test_infinite_loop_times_out_quickly() -> None:
    result = run_python("while True:\n    pass\n", Limits(timeout_s=2.0, cpu_s=30))
    assert not result.passed
    assert result.status == "timeout"
    assert result.exit_code == -9
    assert 2.0 <= result.duration_s < 6.0


def test_cpu_limit_kills() -> None:
    result = run_python("while True:\n    pass\n", Limits(timeout_s=20.0, cpu_s=1))
    assert not result.passed
    assert result.status == "killed"
    assert result.exit_code is not None and result.exit_code < 0


def test_fork_bomb_is_contained_and_leaves_nothing() -> None:
    program = (
        "import os\nprint(os.getuid(), os.getpgrp(), flush=True)\nwhile True:\n    os.fork()\n"
    )
    result = run_python(program, Limits(timeout_s=5.0, cpu_s=5, memory_mb=256, max_processes=8))
    assert not result.passed
    assert result.status in ("failed", "killed", "timeout")
    uid, pgid = (int(word) for word in result.stdout.split()[:2])
    assert not _live_processes(pgid=pgid)
    if uid != os.getuid():  # a per-run uid (we are root): nothing of it may remain
        assert uid != 0
        assert not _live_processes(uid=uid)


@pytest.mark.skipif(not IS_ROOT, reason="escapes from the process group are caught by uid")
def test_child_that_leaves_the_group_is_killed_too() -> None:
    program = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    print(os.getpid(), flush=True)\n"
        "    time.sleep(60)\n"
        "else:\n"
        "    time.sleep(0.5)\n"
    )
    result = run_python(program, SMALL)
    assert result.passed, result
    assert not _pid_alive(int(result.stdout.split()[0]))


@pytest.mark.parametrize(
    "program",
    [
        "x = bytearray(4 * 1024**3)\n",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024**2))\n",
    ],
    ids=["one-big-allocation", "growing-list"],
)
def test_memory_hog_is_stopped(program: str) -> None:
    result = run_python(program, SMALL)
    assert not result.passed
    assert result.status == "memory"
    assert "MemoryError" in result.stderr


@pytest.mark.parametrize("allow_netns", [True, False], ids=["auto", "socket-guard"])
def test_network_is_unreachable(allow_netns: bool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        port = server.getsockname()[1]
        program = (
            "import socket\n"
            "for address in [('127.0.0.1', PORT), ('1.1.1.1', 80)]:\n"
            "    try:\n"
            "        socket.create_connection(address, timeout=2).close()\n"
            "        print('connected', address)\n"
            "    except OSError as exc:\n"
            "        print('refused', address, exc)\n"
            "socket.create_connection(('127.0.0.1', PORT), timeout=2)\n"
        ).replace("PORT", str(port))
        result = sandbox._run(program, SMALL, allow_netns=allow_netns)
        assert not result.passed
        assert result.status == "failed"
        assert "connected" not in result.stdout
        assert result.stdout.count("refused") == 2
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever reached the test's listening socket
    if not allow_netns:
        assert result.network == "socket-guard"


def test_network_isolation_reports_a_mode() -> None:
    assert network_isolation() in ("netns", "socket-guard")


def test_big_file_is_limited_and_workdir_removed() -> None:
    program = (
        "import os\n"
        "print(os.getcwd(), flush=True)\n"
        "with open('big.bin', 'wb') as f:\n"
        "    f.write(b'x' * (8 * 1024**2))\n"
    )
    result = run_python(program, SMALL)  # file_size_mb=1
    assert not result.passed
    assert "File too large" in result.stderr or result.status == "killed"
    workdir = Path(result.stdout.strip())
    assert workdir.name.startswith("smallfirst-sandbox-")
    assert not workdir.exists()


def test_output_is_truncated() -> None:
    result = run_python("print('a' * 100_000)\nprint('the end')\n", SMALL)
    assert result.passed
    assert len(result.stdout) < sandbox.OUTPUT_LIMIT_BYTES + 100
    assert result.stdout.startswith("aaaa")
    assert result.stdout.endswith("the end\n")
    assert "bytes cut" in result.stdout


def test_environment_descriptors_and_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMALLFIRST_TEST_SECRET", "do-not-leak")
    program = (
        "import os, sys\n"
        "print(sorted(os.environ))\n"
        "print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))\n"
        "print(repr(sys.stdin.read()))\n"
        "print(sys.flags.isolated)\n"
    )
    result = run_python(program, SMALL)
    assert result.passed, result
    env_line, fd_line, stdin_line, isolated_line = result.stdout.splitlines()
    assert "SMALLFIRST_TEST_SECRET" not in env_line
    assert fd_line == "[0, 1, 2, 3]"  # stdio, and the descriptor listdir itself opened
    assert stdin_line == "''"
    assert isolated_line == "1"


@pytest.mark.skipif(not IS_ROOT, reason="the privilege drop only happens as root")
def test_runs_unprivileged_when_root() -> None:
    program = (
        "import os\n"
        "print(os.getuid(), os.getgid(), os.getgroups())\n"
        "for path in ('/etc/smallfirst-sandbox-test', '/root/smallfirst-sandbox-test'):\n"
        "    try:\n"
        "        open(path, 'w').close()\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('denied', exc.errno)\n"
        "open('inside.txt', 'w').write('ok')\n"
    )
    result = run_python(program, SMALL)
    assert result.passed, result
    ids, *attempts = result.stdout.splitlines()
    uid, gid, groups = ids.split(" ", 2)
    assert int(uid) != 0 and int(gid) != 0 and groups == "[]"
    assert attempts == ["denied 13", "denied 13"]
    assert not Path("/etc/smallfirst-sandbox-test").exists()


def test_cannot_start_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    result = run_python("print('never')", SMALL)
    assert not result.passed
    assert (result.status, result.exit_code) == ("error", None)
    assert "could not start" in result.stderr


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        Limits(timeout_s=0)
    with pytest.raises(ValueError, match="max_processes"):
        Limits(max_processes=0)
