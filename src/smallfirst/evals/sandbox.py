"""Run untrusted, model-written Python in a separate, confined process.

:func:`run_python` writes the program into a fresh temporary directory and runs it there with
``python -I`` (isolated mode), stdin at /dev/null, a minimal environment and a new session, under
resource limits (wall clock, CPU, address space, processes, file size). It never runs model
code inside the calling process.

The child is :mod:`.sandbox_launcher` run as a script: it confines itself (network
namespace or a socket guard, a per-run uid as root, resource limits) and then execs the
sandboxed interpreter. :func:`network_isolation` says which network isolation this machine
gets; every :class:`SandboxResult` records the one it got.

Output goes to unlinked temporary files, not pipes: ``communicate()`` would hold all of a
program's output in the harness's memory, and a grandchild holding a pipe open would keep it
waiting; files are bounded by ``RLIMIT_FSIZE``. After the program exits (or its wall clock
runs out) the whole process group is killed with SIGKILL, then, for a per-run uid, every
process of that uid.

Deliberately not done: no cgroups, so memory is limited per process (worst case
``max_processes × memory_mb``); no mount namespace, so world-writable places (``/tmp``,
``/dev/shm``) stay writable, each file capped at ``file_size_mb``; no seccomp. This contains
careless and mildly hostile programs; it is not a defence against kernel exploits. Linux
only. This module supervises and cleans up; how the child confines itself is the launcher's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Literal

from smallfirst.evals import sandbox_launcher
from smallfirst.evals.sandbox_launcher import PROGRAM_NAME, live_pids_of, owner

__all__ = [
    "DEFAULT_LIMITS",
    "OUTPUT_LIMIT_BYTES",
    "Limits",
    "NetworkIsolation",
    "SandboxResult",
    "SandboxStatus",
    "network_isolation",
    "run_python",
]

log = logging.getLogger(__name__)

SandboxStatus = Literal["passed", "failed", "timeout", "memory", "killed", "error"]
NetworkIsolation = Literal["netns", "socket-guard", "none"]

OUTPUT_LIMIT_BYTES = 4096  # kept of each of stdout and stderr: the start and the end

# Per-run uids are drawn from here: far above any uid a distribution or an admin hands out,
# and below 2**31 so nothing that treats uid_t as signed is confused.
_SANDBOX_UID_FIRST = 1_700_000_000
_SANDBOX_UID_COUNT = 100_000_000
_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "out of memory")


@dataclass(frozen=True, slots=True)
class Limits:
    timeout_s: float = 10.0  # wall clock, launcher start-up included
    cpu_s: int = 10  # RLIMIT_CPU per process: SIGXCPU at cpu_s, SIGKILL a second later
    memory_mb: int = 1024  # RLIMIT_AS per process
    # RLIMIT_NPROC: processes and threads of the sandbox user. Small, because memory_mb is
    # per process: this bounds a forking program's memory at max_processes × memory_mb.
    max_processes: int = 16
    file_size_mb: int = 16  # RLIMIT_FSIZE: any file written, captured stdout/stderr too
    open_files: int = 256  # RLIMIT_NOFILE

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        for name in ("cpu_s", "memory_mb", "max_processes", "file_size_mb", "open_files"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class SandboxResult:
    passed: bool  # exit code 0 within limits
    status: SandboxStatus
    exit_code: int | None  # negative: killed by that signal; None: never started
    duration_s: float
    stdout: str  # truncated to OUTPUT_LIMIT_BYTES, keeping the start and the end
    stderr: str  # truncated likewise; for status "error", why the sandbox failed
    network: NetworkIsolation = "none"  # what kept the program off the network


def run_python(program: str, limits: Limits = DEFAULT_LIMITS) -> SandboxResult:
    """Run ``program`` (Python source) in the sandbox and report how it went."""
    return _run(program, limits, allow_netns=True)


def network_isolation() -> NetworkIsolation:
    """Which network isolation :func:`run_python` gets here: ``"netns"`` or ``"socket-guard"``.

    Found by running an empty program (a tenth of a second); ``"none"`` if the sandbox
    cannot start at all.
    """
    return run_python("pass", Limits(timeout_s=30.0)).network


@dataclass(frozen=True, slots=True)
class _Report:
    """What the launcher wrote to the status pipe before exec (or instead of it)."""

    network: NetworkIsolation = "none"
    uid: int | None = None
    python: str | None = None
    error: str | None = None


def _run(program: str, limits: Limits, *, allow_netns: bool) -> SandboxResult:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="smallfirst-sandbox-"))
    try:
        program_path = workdir / PROGRAM_NAME
        program_path.write_text(program, encoding="utf-8")
        program_path.chmod(0o644)  # the sandbox user reads it; root owns it
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            return _supervise(workdir, out, err, limits, allow_netns=allow_netns, started=started)
    finally:
        _remove_tree(workdir)


def _supervise(
    workdir: Path,
    out: IO[bytes],
    err: IO[bytes],
    limits: Limits,
    *,
    allow_netns: bool,
    started: float,
) -> SandboxResult:
    uid = _SANDBOX_UID_FIRST + secrets.randbelow(_SANDBOX_UID_COUNT)
    status_r, status_w = os.pipe()
    command = _launcher_command(status_w, uid, limits, allow_netns=allow_netns)
    try:
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=workdir,
                env=_environment(workdir),
                start_new_session=True,
                close_fds=True,
                pass_fds=(status_w,),
            )
        except OSError as exc:
            duration_s = time.monotonic() - started
            return SandboxResult(False, "error", None, duration_s, "", f"could not start: {exc}")
        finally:
            os.close(status_w)
        try:
            exited = _wait_for_exit(proc.pid, started + limits.timeout_s)
        finally:
            # Also when the program exited: a child it forked may outlive it. The leader is
            # still an unreaped zombie here, so its pid, the group id, cannot be reused yet.
            _kill_group(proc.pid)
            exit_code = proc.wait()
        duration_s = time.monotonic() - started
        report = _read_report(status_r)
    finally:
        os.close(status_r)

    if report.uid is not None and report.uid == uid:
        _kill_user_processes(uid)  # a per-run uid: anything still running is this run's
    stdout = _read_truncated(out)
    stderr = _read_truncated(err)
    status = _status(exit_code, timed_out=not exited, report=report, stderr=stderr)
    if status == "error":
        stderr = f"sandbox error: {report.error or 'the launcher did not report'}\n{stderr}"
    log.debug(
        "sandbox %s (exit %s) in %.2fs: network=%s uid=%s python=%s",
        status,
        exit_code,
        duration_s,
        report.network,
        report.uid,
        report.python,
    )
    return SandboxResult(
        passed=status == "passed",
        status=status,
        exit_code=exit_code,
        duration_s=duration_s,
        stdout=stdout,
        stderr=stderr,
        network=report.network,
    )


def _launcher_command(status_fd: int, uid: int, limits: Limits, *, allow_netns: bool) -> list[str]:
    """The launcher's command line: the caller's interpreter, standard library only."""
    config = {
        "status_fd": status_fd,
        "uid": uid,
        "allow_netns": allow_netns,
        "pythons": _interpreters(),
        "limits": asdict(limits),
    }
    launcher = str(Path(sandbox_launcher.__file__).resolve())
    return [sys.executable, "-I", "-S", "-B", launcher, json.dumps(config)]


def _status(exit_code: int, *, timed_out: bool, report: _Report, stderr: str) -> SandboxStatus:
    if report.error is not None:
        return "error"
    if timed_out:
        return "timeout"
    if report.uid is None:
        return "error"  # the launcher died before it could exec the program
    if exit_code == 0:
        return "passed"
    # RLIMIT_AS does not kill: allocations fail, which Python reports as MemoryError (and C
    # code as ENOMEM, sometimes followed by an abort).
    if any(marker in stderr for marker in _MEMORY_MARKERS):
        return "memory"
    return "killed" if exit_code < 0 else "failed"


def _interpreters() -> list[str]:
    """Interpreters the sandbox may run, best first; the launcher takes the first it can run."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        sys.executable,
        f"/usr/local/bin/{version}",
        f"/usr/bin/{version}",
        "/usr/local/bin/python3",
        "/usr/bin/python3",
    ]
    return list(dict.fromkeys(c for c in candidates if c))


def _environment(workdir: Path) -> dict[str, str]:
    # Nothing of the caller's: no tokens, no proxies. -I already ignores PYTHON* variables.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


def _wait_for_exit(pid: int, deadline: float) -> bool:
    """Wait until ``pid`` has exited, without reaping it; False if ``deadline`` came first."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)  # readable once the process has exited
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            return bool(poller.poll(remaining_ms)) or _has_exited(pid)
        finally:
            os.close(pidfd)
    # No pidfd (kernel before 5.3): poll, backing off to 50 ms.
    delay_s = 0.001
    while not _has_exited(pid):
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            return False
        time.sleep(min(delay_s, remaining_s))
        delay_s = min(delay_s * 2, 0.05)
    return True


def _has_exited(pid: int) -> bool:
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True  # someone else reaped it


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_user_processes(uid: int) -> None:
    """SIGKILL every live process of ``uid`` until none is left: a fork bomb may still fork."""
    for _round in range(200):
        pids = list(live_pids_of(uid))
        if not pids:
            return
        for pid in pids:
            _kill_if_owned(pid, uid)
        time.sleep(0.005)
    log.warning("sandbox uid %d still has processes after repeated SIGKILL", uid)


def _kill_if_owned(pid: int, uid: int) -> None:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        # No pidfd: a pid could in principle be reused between the check and the kill.
        if owner(pid) == uid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        return
    try:
        # Checked after pinning the process: if the pid was reused before pidfd_open, we
        # check (and signal) the new process, never an unrelated one by mistake.
        if owner(pid) == uid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)


def _read_report(status_r: int) -> _Report:
    # Non-blocking: the launcher and the program are dead, so all there is has been written.
    os.set_blocking(status_r, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(status_r, 65536):
            chunks.append(chunk)
    lines = b"".join(chunks).decode("utf-8", errors="replace").splitlines()
    report = _Report()
    for line in lines:  # an "ok" line, then maybe an error line when exec failed
        with contextlib.suppress(ValueError, TypeError):
            data = json.loads(line)
            report = _Report(
                network=data.get("network", report.network),
                uid=data.get("uid", report.uid),
                python=data.get("python", report.python),
                error=data.get("error"),
            )
    return report


def _read_truncated(stream: IO[bytes], limit: int = OUTPUT_LIMIT_BYTES) -> str:
    size = os.fstat(stream.fileno()).st_size
    stream.seek(0)
    if size <= limit:
        data = stream.read(limit)
    else:
        # Keep both ends: the start of stdout and the end of a traceback both matter.
        head = stream.read(limit // 2)
        stream.seek(size - limit // 2)
        tail = stream.read(limit // 2)
        data = head + f"\n[... {size - len(head) - len(tail)} bytes cut ...]\n".encode() + tail
    return data.decode("utf-8", errors="replace")


def _remove_tree(path: Path) -> None:
    if os.geteuid() != 0:
        # Not root: a program may have left directories it made unwritable. Its processes
        # are dead, so nothing swaps a directory for a symlink behind our back.
        for root, dirs, _files in os.walk(path):
            for name in dirs:
                sub = Path(root, name)
                if not sub.is_symlink():
                    with contextlib.suppress(OSError):
                        sub.chmod(0o700)
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        log.warning("could not remove sandbox directory %s", path)
