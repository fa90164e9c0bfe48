"""The same model profiled in-process and as a llama-server tier: do the two methods agree?

``smallfirst models profile`` measures an in-process model in its own metering slot, and a
llama-server tier over HTTP by its server process's CPU time (``--pid``, docs/llama-server.md).
Both use the same estimate (CPU-seconds × W per thread + RAM W × wall time), the same
llama.cpp (llama-server built from the vendored sources, ``smallfirst.peers``), the same GGUF
and the same thread count, so their joules per token should differ only by what really
differs: the server's HTTP and scheduling work, and its own decode loop against ours.

Each round profiles each model both ways, the order alternating per round, and only one
model runs at a time (llama-server is started for its turn and stopped after it). Per model:
J per input token and per output token of each side, and the ratios llama-server /
in-process per round and their median.

    .venv/bin/python bench/llama_server_profile.py [--quick] [--models NAME...] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from harness import script
from harness.gateway import model_path
from harness.procs import Child, scratch_dir
from harness.stats import fmt, ratio
from smallfirst.catalog import Catalog
from smallfirst.metering.pricing import Profile
from smallfirst.metering.profiling import profile_model
from smallfirst.metering.service import Metering
from smallfirst.peers import Peers, ensure_peers
from smallfirst.settings import Settings, UserModel
from smallfirst.testing import free_port

SIDES = ("in-process", "llama-server")


def _profile(settings: Settings, name: str, repeats: int, pid: int | None = None) -> Profile:
    metering = Metering(settings, Catalog(settings))
    return profile_model(
        settings, name, metering.accountant, metering.constants, repeats=repeats, pid=pid
    )


def _served(
    args: argparse.Namespace, peers: Peers, model: str, settings: Settings, logs: Path
) -> Profile:
    """``model`` profiled as a llama-server tier: the server started, measured, stopped."""
    port = free_port()
    cmd = peers.server_command(
        model_path(model), port=port, threads=args.threads, n_ctx=2048, extra=("-np", "1")
    )
    tier = UserModel(name=f"{model}-llama-server", base_url=f"http://127.0.0.1:{port}/v1")
    with Child(f"llama-server {model}", cmd, log_path=logs / f"{model}.log") as child:
        child.wait_ready(f"http://127.0.0.1:{port}/health", 300)
        remote = settings.model_copy(update={"models": (tier,)})
        return _profile(remote, tier.name, args.repeats, pid=child.pid)


def bench_model(
    args: argparse.Namespace, peers: Peers, model: str, settings: Settings, logs: Path
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for round_no in range(args.rounds):
        order = SIDES if round_no % 2 == 0 else SIDES[::-1]
        for side in order:
            if side == "in-process":
                p = _profile(settings, model, args.repeats)
            else:
                p = _served(args, peers, model, settings, logs)
            runs.append(
                {
                    "round": round_no,
                    "side": side,
                    "j_per_input_token": p.j_per_input_token,
                    "j_per_output_token": p.j_per_output_token,
                    "method": p.method,
                    "source": p.source,
                }
            )
            print(
                f"  {model} round {round_no + 1} {side}: {p.j_per_input_token:.4f} J/in, "
                f"{p.j_per_output_token:.4f} J/out ({p.method})",
                flush=True,
            )
    return {"runs": runs, **_ratios(runs)}


def _ratios(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per round, llama-server's figure over in-process's; and each side's median."""
    out: dict[str, Any] = {}
    for key in ("j_per_input_token", "j_per_output_token"):
        by = {(r["round"], r["side"]): r[key] for r in runs}
        rounds = sorted({r["round"] for r in runs})
        per_round = [ratio(by[(n, "llama-server")], by[(n, "in-process")]) for n in rounds]
        out[key] = {
            side: statistics.median(r[key] for r in runs if r["side"] == side) for side in SIDES
        }
        out[key]["ratios"] = per_round
        out[key]["ratio_median"] = statistics.median(per_round)
    return out


def main() -> int:
    p = script.parser(__doc__, area="metering", quick="SmolLM2 only, one round, one repeat")
    p.add_argument("--models", nargs="+", help="catalog names (default: SmolLM2, Qwen-0.5B)")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, both sides")
    p.add_argument("--rounds", type=int, help="rounds (default 3; quick 1)")
    p.add_argument("--repeats", type=int, help="runs per profile (default 3; quick 1)")
    args = p.parse_args()
    quick = args.quick
    args.models = args.models or (
        ["smollm2-135m-instruct"]
        if quick
        else ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]
    )
    args.rounds = args.rounds or (1 if quick else 3)
    args.repeats = args.repeats or (1 if quick else 3)
    peers = ensure_peers(progress=print)
    run = script.start(
        "llama_server_profile", "one model profiled in-process and as a llama-server tier", args
    )
    per_model: dict[str, dict[str, Any]] = {}
    with scratch_dir() as tmp:
        settings = Settings(
            data_dir=tmp / "data",
            models_dir=model_path(args.models[0]).parent,
            n_threads=args.threads,
            hardware_counters=False,  # both sides by the same estimate, on any machine
        )
        for model in args.models:
            per_model[model] = bench_model(args, peers, model, settings, tmp)
    headers = ["model", "figure", *SIDES, "llama-server / in-process (median, rounds)"]
    rows = [
        [
            model,
            label,
            fmt(m[key]["in-process"], 4),
            fmt(m[key]["llama-server"], 4),
            f"{fmt(m[key]['ratio_median'])} ({', '.join(fmt(x) for x in m[key]['ratios'])})",
        ]
        for model, m in per_model.items()
        for key, label in (
            ("j_per_input_token", "J/input token"),
            ("j_per_output_token", "J/output token"),
        )
    ]
    notes = [
        f"{args.threads} threads both sides, {args.rounds} round(s), {args.repeats} run(s) per "
        "profile, the side order alternating per round; llama-server with -np 1 -c 2048",
        "estimated both sides (counters off): CPU-seconds × W/thread + RAM W × wall time; "
        "in-process: this process's CPU time in the profile's slot; llama-server: its "
        "process's CPU time from /proc, over each HTTP request",
        f"llama-server built from llama-cpp-python {peers.version}'s vendored llama.cpp",
    ]
    result = {
        "parameters": {k: v for k, v in vars(args).items() if k != "out"},
        "models": per_model,
    }
    run.finish(
        result,
        headers=headers,
        rows=rows,
        notes=notes,
        title="One model profiled in-process and as a llama-server tier",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
