"""Result files: ``results/<area>/<name>-<YYYYmmdd-HHMMSS>[-quick].json`` and a ``.md`` twin.

The JSON file holds every figure and every individual run; the Markdown file holds the
table with the machine it was measured on (see :mod:`harness.machine`) and the notes. Areas
group the files by what they measure (:data:`AREAS`: serving, metering, routing ...).

This module only writes files; it neither measures nor prints.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import BENCH_DIR
from harness.stats import markdown_table

__all__ = ["AREAS", "RESULTS_DIR", "results_dir", "write_results"]

RESULTS_DIR = BENCH_DIR / "results"
AREAS = (
    "serving",
    "metering",
    "routing",
    "evals",
    "dashboard",
    "resilience",
    "access",
    "structured",
    "embeddings",
    "tools",
    "scheduling",
    "store",
    "batches",
)


def results_dir(area: str) -> Path:
    """The folder of ``area``'s result files (one of :data:`AREAS`)."""
    if area not in AREAS:
        raise ValueError(f"unknown results area {area!r}; one of {', '.join(AREAS)}")
    return RESULTS_DIR / area


def _markdown(
    title: str,
    result: Mapping[str, Any],
    table: str,
    notes: Sequence[str],
    quick: bool,
    raw_name: str,
) -> str:
    m = result.get("machine", {})
    lines = [
        f"# {title}",
        "",
        f"- date: {m.get('date')}",
        f"- machine: {m.get('cpu_model')}, {m.get('cpu_cores')} cores "
        f"({m.get('cpu_cores_usable')} usable), {m.get('mem_total_gib')} GiB; "
        f"load average at start {m.get('load_average_at_start')}",
        f"- llama-cpp-python {m.get('llama_cpp_python')}, smallfirst {m.get('smallfirst')} "
        f"({m.get('git_commit')}), Python {m.get('python')}",
        f"- command: `{m.get('command')}`" + (" (quick mode)" if quick else ""),
        "",
        table,
        "",
        *[f"- {n}" for n in notes],
        "",
        f"Raw data: `{raw_name}`",
        "",
    ]
    return "\n".join(lines)


def write_results(
    name: str,
    result: Mapping[str, Any],
    *,
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    out_dir: Path,
    notes: Sequence[str] = (),
    quick: bool = False,
) -> tuple[Path, Path]:
    """Write ``<name>-<timestamp>[-quick].json`` and the matching ``.md``; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = f"{name}-{stamp}" + ("-quick" if quick else "")
    json_path = out_dir / f"{stem}.json"
    md_path = out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    table = markdown_table(headers, rows)
    md_path.write_text(_markdown(title, result, table, notes, quick, json_path.name))
    return json_path, md_path
