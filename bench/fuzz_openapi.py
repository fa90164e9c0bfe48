"""Fuzz the gateway from its own /openapi.json: no 5xx, no response that breaks the schema.

``smallfirst serve`` runs in its own process with two models: a loopback stub upstream
(``stub``, a remote model that answers at once) and SmolLM2-135M (in process; ``--no-smol``
leaves it out). The ``schemathesis`` CLI reads ``/openapi.json`` and runs its phases
(examples, coverage, fuzzing, stateful) against every operation, with valid and invalid
data. ``harness/fuzz_hooks.py`` points each generated ``model`` at one of the two models
and caps token limits at ``--max-tokens``, so the fuzzer reaches the engines instead of
collecting 404s and a case costs milliseconds.

Checks: ``not_a_server_error`` (no 5xx), ``status_code_conformance``,
``content_type_conformance``, ``response_headers_conformance``,
``response_schema_conformance`` (every JSON body and every SSE event against the documented
schema), ``negative_data_rejection`` (invalid data is refused), ``unsupported_method`` and
the rest of schemathesis's defaults except ``positive_data_acceptance``: some schema-valid
requests are refused by rules JSON Schema cannot state (``since`` later than ``until``, a
cursor this API did not issue, a prompt longer than the context, ``top_logprobs`` without
``logprobs``), and those 400s are documented. After the run the gateway must still answer
``/health`` and its receipt database must pass ``PRAGMA integrity_check``.

``--cases`` is the number of cases to aim at in total; schemathesis takes a per-operation
maximum, so it gets ``cases / operations`` and the result records how many it generated.

    .venv/bin/python bench/fuzz_openapi.py [--cases 10000] [--seed 0] [--no-smol]
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from harness import BENCH_DIR, script
from harness.gateway import running_gateway
from harness.procs import scratch_dir
from smallfirst.settings import Settings
from smallfirst.stub_upstream import StubUpstream

SMOL = "smollm2-135m-instruct"
OPERATIONS = 11  # documented operations; the run records the real count


def _st_bin() -> str:
    found = Path(sys.executable).with_name("st")
    if found.exists():
        return str(found)
    which = shutil.which("st") or shutil.which("schemathesis")
    if which is None:
        raise SystemExit("bench: schemathesis is not installed (pip install -e '.[dev]')")
    return which


def _run_schemathesis(
    url: str, per_operation: int, seed: int, workers: int, report: Path, env: dict[str, str]
) -> tuple[int, float]:
    cmd = [
        _st_bin(),
        "run",
        f"{url}/openapi.json",
        "--max-examples",
        str(per_operation),
        "--seed",
        str(seed),
        "--workers",
        str(workers),
        "--exclude-checks",
        "positive_data_acceptance",
        "--request-timeout",
        "120",
        "--suppress-health-check",
        "all",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    started = time.perf_counter()
    # its own folder: schemathesis keeps a cache (.schemathesis/) where it runs
    out = subprocess.run(
        cmd, env=env, cwd=report.parent, capture_output=True, text=True, check=False
    )
    print(out.stdout[-20_000:], out.stderr[-4000:], sep="\n", flush=True)
    return out.returncode, time.perf_counter() - started


def _short(value: Any, limit: int = 2000) -> Any:
    """``value`` with long strings cut, so that a result file stays readable."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + " …"
    if isinstance(value, dict):
        return {k: _short(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_short(v, limit) for v in value[:20]]
    return value


def _failures(report: dict[str, Any]) -> list[dict[str, Any]]:
    found = [_short(f) for f in report.get("failures") or []]
    found += [{"code": "error", **_short(e)} for e in report.get("errors") or []]
    return found


def fuzz(cases: int, seed: int, workers: int, smol: bool, max_tokens: int) -> dict[str, Any]:
    per_operation = max(1, round(cases / OPERATIONS))
    with scratch_dir() as tmp, StubUpstream() as stub:
        data = tmp / "data"
        data.mkdir()
        settings: dict[str, str | int | bool] = {
            "data_dir": str(data),
            "models_dir": str(Settings().models_path),
            "default_model": SMOL if smol else "stub",
            "default_router": False,
            "n_ctx": 512,
        }
        models = [{"name": "stub", "base_url": stub.url, "model_id": "stub"}]
        with running_gateway(tmp, name="fuzzed", settings=settings, models=models) as gw:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), env.get("PYTHONPATH", "")])
            env["SCHEMATHESIS_HOOKS"] = "harness.fuzz_hooks"
            env["FUZZ_MODELS"] = f"stub,{SMOL}" if smol else "stub"
            env["FUZZ_MAX_TOKENS"] = str(max_tokens)
            report_path = tmp / "report.json"
            rc, seconds = _run_schemathesis(gw.url, per_operation, seed, workers, report_path, env)
            health = httpx.get(gw.url + "/health", timeout=30).status_code
            receipts = httpx.get(gw.url + "/smallfirst/v1/summary", timeout=30).json()
            log = gw.child.log_tail(1_000_000)
            if "Traceback" in log:
                print(log[log.index("Traceback") - 2000 :][:6000], flush=True)
        with sqlite3.connect(data / "smallfirst.db") as db:
            integrity = str(db.execute("PRAGMA integrity_check").fetchone()[0])
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return {
        "cases_asked": cases,
        "max_examples_per_operation": per_operation,
        "seed": seed,
        "workers": workers,
        "models": ["stub", SMOL] if smol else ["stub"],
        "max_tokens_cap": max_tokens,
        "schemathesis_exit_code": rc,
        "schemathesis_version": report.get("schemathesis_version"),
        "seconds": seconds,
        "operations": report.get("operations"),
        "phases": {k: v.get("status") for k, v in (report.get("phases") or {}).items()},
        "test_cases": report.get("test_cases"),
        "failures": _failures(report),
        "valid_rates": report.get("valid_rates"),
        "requests_answered_per_model": {
            m["model"]: m["requests"] for m in receipts.get("models", [])
        },
        "gateway_tracebacks": log.count("Traceback"),
        "health_after": health,
        "integrity_check": integrity,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = script.parser(__doc__, area="resilience")
    p.add_argument("--cases", type=int, default=10_000, help="cases to aim at (default 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="concurrent schemathesis workers")
    p.add_argument("--max-tokens", type=int, default=8, help="cap on generated token limits")
    p.add_argument("--no-smol", action="store_true", help="the stub upstream only")
    args = p.parse_args(argv)
    run = script.start("fuzz_openapi", "schemathesis against /openapi.json", args)
    result = fuzz(args.cases, args.seed, args.workers, not args.no_smol, args.max_tokens)
    cases = (result["test_cases"] or {}).get("generated", 0)
    failures = result["failures"]
    clean = (
        not failures
        and result["schemathesis_exit_code"] == 0
        and result["gateway_tracebacks"] == 0
        and result["health_after"] == 200
        and result["integrity_check"] == "ok"
    )
    rows = [
        ["cases generated", str(cases)],
        ["failures (5xx, schema breaks, …)", str(len(failures))],
        ["schemathesis exit code", str(result["schemathesis_exit_code"])],
        ["tracebacks in the gateway log", str(result["gateway_tracebacks"])],
        ["receipts stored, per model", json.dumps(result["requests_answered_per_model"])],
        ["/health after", str(result["health_after"])],
        ["PRAGMA integrity_check", result["integrity_check"]],
        ["seconds", f"{result['seconds']:.1f}"],
    ]
    verdict = "PASS: no 5xx and no schema break" if clean else "FAIL: see failures"
    notes = [json.dumps(f)[:500] for f in failures[:50]]
    run.finish(result, headers=["figure", "value"], rows=rows, notes=notes, verdicts=[verdict])
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
