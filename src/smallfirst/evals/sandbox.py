"""Run untrusted, model-written Python in a separate, confined process.

:func:`run_python` writes the program into a fresh temporary directory and runs it there with
``python -I`` (isolated mode), stdin at /dev/null, a minimal environment and a new session, under
resource limits (wall clock, CPU, address space, processes, file size). It never runs model
code inside the calling process.

The child is started as this module run as a script (``python -I -S sandbox.py CONFIG``): a
small launcher that confines itself and then execs the sandboxed interpreter. A launcher
rather than ``preexec_fn`` because ``preexec_fn`` may deadlock when the caller has threads
(the gateway and the harness do).

The launcher, in order:

* **network**: as root, ``unshare(CLONE_NEWNET)``, so the program sees only a down loopback;
  otherwise an unprivileged ``unshare(CLONE_NEWUSER | CLONE_NEWNET)``; where neither is
  allowed (e.g. a container without ``CAP_SYS_ADMIN``) a prelude that makes ``socket``
  refuse everything but ``AF_UNIX`` and name lookups. :func:`network_isolation` says which
  one this machine gets; every :class:`SandboxResult` records the one it got.
* **user**: as root, becomes a fresh uid drawn at random per run (and owns only the temp
  directory), because ``RLIMIT_NPROC`` does not apply to root and counts per user: a uid of
  its own gives each run its own process budget and lets us kill every process the run left
  behind, even ones that left the process group with ``setsid``. Where that uid cannot
  exist (a user namespace that maps few ids) it falls back to ``nobody``. Not as root, it
  stays the caller's user and ``RLIMIT_NPROC`` is raised by the caller's process count.
* **interpreter**: the caller's ``sys.executable`` if the sandbox user can run it, else a
  system ``python3`` it can (here root's pyenv lives under ``/root``, mode 0700, so the
  sandbox user runs ``/usr/bin/python3``). What the program can import is that
  interpreter's.

Output goes to unlinked temporary files, not pipes: ``communicate()`` would hold all of a
program's output in the harness's memory, and a grandchild holding a pipe open would keep it
waiting; files are bounded by ``RLIMIT_FSIZE``. After the program exits (or its wall clock
runs out) the whole process group is killed with SIGKILL, then, for a per-run uid, every
process of that uid.

Deliberately not done: no cgroups, so memory is limited per process (worst case
``max_processes × memory_mb``); no mount namespace, so world-writable places (``/tmp``,
``/dev/shm``) stay writable, each file capped at ``file_size_mb``; no seccomp. This contains
careless and mildly hostile programs; it is not a defence against kernel exploits. Linux
only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Literal

log = logging.getLogger(__name__)

SandboxStatus = Literal["passed", "failed", "timeout", "memory", "killed", "error"]
NetworkIsolation = Literal["netns", "socket-guard", "none"]

OUTPUT_LIMIT_BYTES = 4096  # kept of each of stdout and stderr: the start and the end

# Per-run uids are drawn from here: far above any uid a distribution or an admin hands out,
# and below 2**31 so nothing that treats uid_t as signed is confused.
_SANDBOX_UID_FIRST = 1_700_000_000
_SANDBOX_UID_COUNT = 100_000_000
_NOBODY = 65534

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000

_PROGRAM_NAME = "program.py"
_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "out of memory")

# Run by the sandboxed interpreter (``-c``) before the program when no network namespace
# could be had. It only has to stop a program that is not trying to get around it; a
# determined one could (ctypes, the original class on the MRO), which is why netns is
# preferred. Name lookups are refused too: the C resolver talks to DNS without Python's
# socket class.
_SOCKET_GUARD = """\
import runpy, socket, sys, _socket

def _refuse(*args, **kwargs):
    raise PermissionError(13, "network access is disabled in the sandbox")

class _GuardedSocket(socket.socket):
    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        # AF_UNIX and adopted descriptors only: asyncio's self-pipe uses socketpair().
        if fileno is None and family != socket.AF_UNIX:
            _refuse()
        super().__init__(family, type, proto, fileno)

for _module in (socket, _socket):
    _module.socket = _module.SocketType = _GuardedSocket
    for _name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        setattr(_module, _name, _refuse)
socket.create_connection = socket.create_server = _refuse
del _module, _name, _GuardedSocket
_path = sys.argv[1]
sys.argv[:] = sys.argv[1:]
runpy.run_path(_path, run_name="__main__")
"""


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


# --- the caller's side -------------------------------------------------------------------


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
        program_path = workdir / _PROGRAM_NAME
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
    config = {
        "status_fd": status_w,
        "uid": uid,
        "allow_netns": allow_netns,
        "pythons": _interpreters(),
        "limits": asdict(limits),
    }
    command = [sys.executable, "-I", "-S", "-B", str(Path(__file__).resolve()), json.dumps(config)]
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
        pids = list(_live_pids_of(uid))
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
        if _owner(pid) == uid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        return
    try:
        # Checked after pinning the process: if the pid was reused before pidfd_open, we
        # check (and signal) the new process, never an unrelated one by mistake.
        if _owner(pid) == uid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)


def _owner(pid: int) -> int | None:
    """The real uid of a live (not zombie) process, or None."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    state = fields.get("State", "").split()
    if not state or state[0] in ("Z", "X"):
        return None  # a zombie holds nothing and cannot be killed again
    return int(fields["Uid"].split()[0])


def _live_pids_of(uid: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _owner(int(entry.name)) == uid:
            yield int(entry.name)


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


# --- the launcher, in the child: this file run as a script ---------------------------------


def _launch(argv: list[str]) -> int:
    """Confine this process, then exec the sandboxed interpreter on the program.

    Runs as the caller's user in the new session, cwd the temp directory, with the caller's
    interpreter under ``-I -S``: only the standard library is imported. Writes one JSON line
    to the status pipe just before exec (and one with ``error`` if anything fails).
    """
    config: dict[str, Any] = json.loads(argv[0])
    status_fd = int(config["status_fd"])
    os.set_inheritable(status_fd, False)  # closed by exec: the program never sees it
    try:
        limits = Limits(**config["limits"])
        network: NetworkIsolation = "socket-guard"
        uid = os.getuid()
        if os.geteuid() == 0:
            # Before dropping root: a new network namespace needs CAP_SYS_ADMIN.
            if config["allow_netns"] and _unshare(_CLONE_NEWNET):
                network = "netns"
            uid = _drop_privileges(int(config["uid"]))
        if (
            network != "netns"
            and config["allow_netns"]
            and _unshare(_CLONE_NEWUSER | _CLONE_NEWNET)
        ):
            network = "netns"
        python = next((p for p in config["pythons"] if os.access(p, os.X_OK)), None)
        if python is None:
            raise OSError(f"the sandbox user can run none of {config['pythons']}")
        max_processes = limits.max_processes
        if uid != config["uid"]:
            # A shared user: RLIMIT_NPROC counts all its processes, not just this run's.
            max_processes += sum(1 for _pid in _live_pids_of(uid))
        _set_limits(limits, max_processes)
        args = [python, "-I", "-B", "-X", "utf8"]
        if network == "socket-guard":
            args += ["-c", _SOCKET_GUARD]
        args.append(_PROGRAM_NAME)
        ok = {"network": network, "uid": uid, "python": python}
        os.write(status_fd, (json.dumps(ok) + "\n").encode())
        os.execv(python, args)
    except BaseException as exc:  # report anything, even SystemExit, rather than vanish
        error = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(status_fd, (json.dumps(error) + "\n").encode())
    return 127


def _unshare(flags: int) -> bool:
    unshare = getattr(os, "unshare", None)  # Python 3.12+
    if unshare is not None:
        try:
            unshare(flags)
        except OSError:
            return False
        return True
    import ctypes  # here: only the launcher needs it, and only before Python 3.12

    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.unshare(ctypes.c_int(flags))) == 0


def _drop_privileges(uid: int) -> int:
    """As root, become ``uid`` (or nobody, if ``uid`` cannot exist here) and own the cwd."""
    for candidate in (uid, _NOBODY):
        try:
            os.chown(".", candidate, candidate)  # the temp dir: the sandbox may write there
            os.setgroups([])
            os.setgid(candidate)
            os.setuid(candidate)  # real, effective and saved: for good
        except OSError:
            continue
        return candidate
    raise PermissionError("could not drop root privileges")


def _set_limits(limits: Limits, max_processes: int) -> None:
    mib = 1024 * 1024
    wanted = (
        (resource.RLIMIT_CPU, limits.cpu_s, limits.cpu_s + 1),
        (resource.RLIMIT_AS, limits.memory_mb * mib, limits.memory_mb * mib),
        (resource.RLIMIT_NPROC, max_processes, max_processes),
        (resource.RLIMIT_FSIZE, limits.file_size_mb * mib, limits.file_size_mb * mib),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (resource.RLIMIT_CORE, 0, 0),  # no core files in the temp dir
    )
    for which, soft, hard in wanted:
        _soft_now, hard_now = resource.getrlimit(which)
        if hard_now != resource.RLIM_INFINITY:
            hard = min(hard, hard_now)  # a non-root process may only lower its hard limit
        resource.setrlimit(which, (min(soft, hard), hard))


if __name__ == "__main__":
    sys.exit(_launch(sys.argv[1:]))
