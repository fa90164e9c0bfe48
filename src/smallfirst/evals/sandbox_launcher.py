"""The sandbox's launcher: confine this process, then exec the interpreter on the program.

:mod:`.sandbox` starts this file as a script (``python -I -S -B sandbox_launcher.py CONFIG``)
in a new session, cwd the run's temp directory. A launcher rather than ``preexec_fn``
because ``preexec_fn`` may deadlock when the caller has threads (the gateway and the
harness do). In order, it sets up:

* **network**: as root, ``unshare(CLONE_NEWNET)``, so the program sees only a down loopback;
  otherwise an unprivileged ``unshare(CLONE_NEWUSER | CLONE_NEWNET)``; where neither is
  allowed (e.g. a container without ``CAP_SYS_ADMIN``) a prelude that makes ``socket``
  refuse everything but ``AF_UNIX`` and name lookups.
* **user**: as root, becomes the run's own uid (drawn at random by the caller; it owns only
  the temp directory), because ``RLIMIT_NPROC`` does not apply to root and counts per user:
  a uid of its own gives each run its own process budget and lets the caller kill every
  process the run left behind, even ones that left the process group with ``setsid``.
  Where that uid cannot exist (a user namespace that maps few ids) it falls back to
  ``nobody``. Not as root, it stays the caller's user and ``RLIMIT_NPROC`` is raised by that
  user's process count.
* **interpreter**: the first of the caller's candidates the sandbox user can run (root's
  pyenv under ``/root``, mode 0700, is not one: the sandbox user then runs
  ``/usr/bin/python3``). What the program can import is that interpreter's.
* **limits**: CPU time, address space, processes, file size, open files, no core files.

It writes one JSON line to the status pipe just before exec (network, uid, interpreter), or
one with ``error`` instead. Run under ``-I -S`` outside the package, it imports only the
standard library and nothing from smallfirst; the caller imports it for :func:`owner` and
:func:`live_pids_of`. It does not supervise, time or clean up the run: :mod:`.sandbox` does.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["PROGRAM_NAME", "launch", "live_pids_of", "owner"]

PROGRAM_NAME = "program.py"

_NOBODY = 65534
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000

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


def owner(pid: int) -> int | None:
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


def live_pids_of(uid: int) -> Iterator[int]:
    """The pids of every live process whose real uid is ``uid``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and owner(int(entry.name)) == uid:
            yield int(entry.name)


def launch(argv: list[str]) -> int:
    """Confine this process as ``argv[0]`` (the caller's JSON config) says, then exec.

    Returns (127) only when it could not exec; the status pipe then says why.
    """
    config: dict[str, Any] = json.loads(argv[0])
    status_fd = int(config["status_fd"])
    os.set_inheritable(status_fd, False)  # closed by exec: the program never sees it
    try:
        limits: Mapping[str, int] = config["limits"]
        network = "socket-guard"
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
        max_processes = int(limits["max_processes"])
        if uid != config["uid"]:
            # A shared user: RLIMIT_NPROC counts all its processes, not just this run's.
            max_processes += sum(1 for _pid in live_pids_of(uid))
        _set_limits(limits, max_processes)
        args = [python, "-I", "-B", "-X", "utf8"]
        if network == "socket-guard":
            args += ["-c", _SOCKET_GUARD]
        args.append(PROGRAM_NAME)
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


def _set_limits(limits: Mapping[str, int], max_processes: int) -> None:
    """Apply the caller's :class:`~.sandbox.Limits` (as a mapping) as rlimits."""
    mib = 1024 * 1024
    cpu_s, memory, file_size = limits["cpu_s"], limits["memory_mb"], limits["file_size_mb"]
    wanted = (
        (resource.RLIMIT_CPU, cpu_s, cpu_s + 1),
        (resource.RLIMIT_AS, memory * mib, memory * mib),
        (resource.RLIMIT_NPROC, max_processes, max_processes),
        (resource.RLIMIT_FSIZE, file_size * mib, file_size * mib),
        (resource.RLIMIT_NOFILE, limits["open_files"], limits["open_files"]),
        (resource.RLIMIT_CORE, 0, 0),  # no core files in the temp dir
    )
    for which, soft, hard in wanted:
        _soft_now, hard_now = resource.getrlimit(which)
        if hard_now != resource.RLIM_INFINITY:
            hard = min(hard, hard_now)  # a non-root process may only lower its hard limit
        resource.setrlimit(which, (min(soft, hard), hard))


if __name__ == "__main__":
    sys.exit(launch(sys.argv[1:]))
