"""Where and how a benchmark ran: CPU, memory, load, versions, git commit, command line.

Every result file records :func:`machine_info`, so that a figure can be read with the
machine it came from. This module only reads (``/proc``, package metadata, ``git``); it
changes nothing and measures no workload.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness import REPO_DIR

__all__ = ["machine_info", "package_version", "print_header"]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty.strip() else "")


def machine_info() -> dict[str, Any]:
    """Where and how this run happened; goes into every result file."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "cwd": str(Path.cwd()),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "mem_total_gib": _mem_total_gib(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "llama_cpp_python": package_version("llama_cpp_python"),
        "smallfirst": package_version("smallfirst"),
        "git_commit": _git_commit(),
        "packages": {d: package_version(d) for d in ("fastapi", "uvicorn", "httpx", "openai")},
    }


def print_header(title: str, machine: Mapping[str, Any]) -> None:
    """The first lines a script prints: what it measures, on what, with which command."""
    print(f"== {title}")
    print(
        f"   {machine['cpu_model']}, {machine['cpu_cores']} cores, load average "
        f"{machine['load_average_at_start']}, llama-cpp-python {machine['llama_cpp_python']}"
    )
    print(f"   {machine['command']}", flush=True)
