"""What every benchmark script does first and last, so that each one only measures.

First: :func:`parser` builds the command line from the script's docstring (``--help``
prints all of it) with ``--out`` defaulting to the script's results area, and :func:`start`
installs the signal handling, records the machine and prints the header. Last:
:meth:`Run.finish` prints the table and the verdicts and writes the result files.

It does not parse a script's own options or decide what a result holds.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.machine import machine_info, print_header
from harness.procs import install_signal_handlers
from harness.results import results_dir, write_results
from harness.stats import text_table

__all__ = ["Run", "parser", "start"]


def parser(doc: str | None, *, area: str, quick: str | None = None) -> argparse.ArgumentParser:
    """An argument parser whose ``--help`` is the script's docstring, with ``--out``.

    ``area`` names the results folder ``--out`` defaults to; ``quick``, when given, adds
    ``--quick`` with that help (a short smoke run, its files marked ``-quick``).
    """
    p = argparse.ArgumentParser(
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out",
        type=Path,
        default=results_dir(area),
        help=f"results folder (default: bench/results/{area})",
    )
    if quick is not None:
        p.add_argument("--quick", action="store_true", help=quick)
    return p


@dataclass(frozen=True)
class Run:
    """One run of a benchmark script: its name, the machine, where its files go."""

    name: str
    title: str
    machine: dict[str, Any]
    out_dir: Path
    quick: bool = False

    def finish(
        self,
        result: Mapping[str, Any],
        *,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        notes: Sequence[str] = (),
        verdicts: Sequence[str] = (),
        title: str | None = None,
        echo_notes: bool = False,
    ) -> tuple[Path, Path]:
        """Print the table and ``verdicts``; write the files (verdicts lead the notes).

        ``result`` gets the benchmark's name and the machine in front of its own keys.
        """
        print()
        print(text_table(headers, rows))
        if verdicts:
            print("\n  " + "\n  ".join(verdicts))
        if echo_notes:
            print("\n  " + "\n  ".join(notes))
        paths = write_results(
            self.name,
            {"benchmark": self.name, "machine": self.machine, **result},
            title=title or self.title,
            headers=headers,
            rows=rows,
            notes=[*verdicts, *notes],
            quick=self.quick,
            out_dir=self.out_dir,
        )
        print("\nwrote " + ", ".join(str(p) for p in paths), flush=True)
        return paths


def start(name: str, title: str, args: argparse.Namespace) -> Run:
    """Install the signal handling, record the machine and print the header.

    ``args`` is what :func:`parser`'s parser returned (``out`` and, if offered, ``quick``).
    """
    install_signal_handlers()
    machine = machine_info()
    print_header(title, machine)
    return Run(name, title, machine, args.out, bool(getattr(args, "quick", False)))
