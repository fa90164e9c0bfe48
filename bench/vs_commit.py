"""Our batched gateway as the working tree has it against the same gateway at an older commit.

A change to the serving path (the scheduler, the hand-off to the event loop, sampling) moves
one stream by a few percent, less than this shared machine moves between two runs. So both
versions run at once, side by side: the base revision (``--base``, default ``HEAD``) checked
out into a temporary git worktree and started with its ``src`` first on ``PYTHONPATH``, and
the working tree. Everything else is the same: the venv and its llama.cpp, the GGUF,
``--threads``, the settings of bench/vs_peers.py (``parallel`` = N, 2048 tokens per slot).

For each model and round, for each client count N, each side serves N concurrent greedy chat
completions (the prompts of vs_peers.py; non-streamed unless ``--stream``), the order of the
two alternating by round. Figures per side and N, medians over rounds: aggregate tok/s, CPU
ms per output token of the gateway process, and the median of the per-round ratios
working tree / base. Greedy answers must be the same on both sides: a difference is printed
and counted (a change that alters answers is not a speed-up).

    .venv/bin/python bench/vs_commit.py [--base REV] [--quick] [--models NAME...] [--clients 1 4 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import script
from harness.gateway import Gateway, running_gateway
from harness.procs import scratch_dir
from harness.stats import fmt, median, ratio
from vs_peers import batched_settings, body, burst

REPO = Path(__file__).resolve().parent.parent
SIDES = ("base", "tree")


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[tuple[Path, str]]:
    """``rev`` in a temporary detached worktree (removed afterwards): (path, full sha)."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="vs_commit-") as tmp:
        path = Path(tmp) / "base"
        git = ["git", "-C", str(REPO), "worktree"]
        subprocess.run([*git, "add", "--detach", str(path), sha], capture_output=True, check=True)
        try:
            yield path, sha
        finally:
            subprocess.run([*git, "remove", "--force", str(path)], capture_output=True)


@contextlib.contextmanager
def gateways(
    args: argparse.Namespace, name: str, base_src: Path, logs: Path
) -> Iterator[dict[tuple[str, int], Gateway]]:
    """Both sides' gateways, one per client count N with ``parallel`` = N."""
    with contextlib.ExitStack() as stack:
        started = {}
        for n in args.clients:
            for side in SIDES:
                env = {**os.environ, "PYTHONPATH": str(base_src)} if side == "base" else None
                started[side, n] = stack.enter_context(
                    running_gateway(
                        logs,
                        name=f"{side}-{name}-p{n}",
                        settings=batched_settings(n, args.flash_attention),
                        threads=args.threads,
                        env=env,
                    )
                )
        yield started


def bench_model(args: argparse.Namespace, name: str, base_src: Path, logs: Path) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with gateways(args, name, base_src, logs) as started:
        for gw in started.values():
            burst(gw.url, gw.child.pid, [body(name, -1, 0, 8)])  # load and warm the model
        for round_no in range(args.rounds):
            order = SIDES if round_no % 2 == 0 else tuple(reversed(SIDES))
            for n in args.clients:
                bodies = [body(name, round_no, c, args.max_tokens) for c in range(n)]
                texts: dict[str, list[str]] = {}
                for side in order:
                    gw = started[side, n]
                    figures = burst(gw.url, gw.child.pid, bodies, args.stream)
                    texts[side] = figures.pop("texts")
                    runs.append({"side": side, "clients": n, "round": round_no, **figures})
                    print(
                        f"  {name} round {round_no} {side} x{n}: {figures['tok_s']:.1f} tok/s, "
                        f"{figures['cpu_ms_per_token']:.1f} CPU ms/token",
                        flush=True,
                    )
                if texts["base"] != texts["tree"]:
                    print(f"  {name} round {round_no} x{n}: ANSWERS DIFFER", flush=True)
                    runs[-1]["answers_differ"] = True
    return {"model": name, "runs": runs}


def summary(result: dict[str, Any], clients: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in clients:
        runs = [r for r in result["runs"] if r["clients"] == n]
        row: dict[str, Any] = {"model": result["model"], "clients": n}
        for side in SIDES:
            mine = [r for r in runs if r["side"] == side]
            row[f"{side}:tok_s"] = median([r["tok_s"] for r in mine])
            row[f"{side}:cpu_ms_per_token"] = median([r["cpu_ms_per_token"] for r in mine])
        by_round: dict[int, dict[str, float]] = {}
        for r in runs:
            by_round.setdefault(r["round"], {})[r["side"]] = r["tok_s"]
        row["tree/base"] = median([ratio(v["tree"], v["base"]) for v in by_round.values()])
        row["round ratios"] = [ratio(v["tree"], v["base"]) for v in by_round.values()]
        row["answers_differ"] = sum(1 for r in runs if r.get("answers_differ"))
        rows.append(row)
    return rows


def main() -> int:
    p = script.parser(__doc__, area="serving", quick="Qwen-0.5B, 2 rounds, clients 1 and 4")
    p.add_argument("--base", default="HEAD", help="the revision to compare with (default HEAD)")
    p.add_argument("--models", nargs="+", help="catalog names (default: Qwen-Coder 0.5B)")
    p.add_argument("--clients", nargs="+", type=int, help="client counts (default 1 4 8)")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, both sides")
    p.add_argument("--rounds", type=int, help="rounds (default 6; quick 2)")
    p.add_argument("--max-tokens", type=int, help="tokens per answer (default 96; quick 32)")
    p.add_argument("--stream", action="store_true", help="stream the answers")
    p.add_argument("--flash-attention", action="store_true", help="flash attention on, both")
    args = p.parse_args()
    args.models = args.models or ["qwen2.5-coder-0.5b-instruct"]
    args.clients = sorted(args.clients or ([1, 4] if args.quick else [1, 4, 8]))
    args.rounds = args.rounds or (2 if args.quick else 6)
    args.max_tokens = args.max_tokens or (32 if args.quick else 96)
    run = script.start("vs_commit", "the working tree against an older commit, side by side", args)
    results, rows = [], []
    with checkout(args.base) as (base, sha), scratch_dir() as logs:
        print(f"  base {args.base} = {sha[:12]}, checked out in {base}", flush=True)
        for name in args.models:
            result = bench_model(args, name, base / "src", logs)
            results.append(result)
            rows += summary(result, args.clients)
    headers = [
        "model", "clients", "base tok/s", "tree tok/s", "tree/base (median of rounds)",
        "per round", "CPU ms/tok base / tree", "rounds with different answers",
    ]  # fmt: skip
    table = [
        [
            r["model"],
            str(r["clients"]),
            fmt(r["base:tok_s"], 1),
            fmt(r["tree:tok_s"], 1),
            fmt(r["tree/base"]),
            " ".join(fmt(x) for x in r["round ratios"]),
            " / ".join(fmt(r[f"{side}:cpu_ms_per_token"], 1) for side in SIDES),
            str(r["answers_differ"]),
        ]
        for r in rows
    ]
    notes = [
        f"base {args.base} = {sha}; tree = the working tree (uncommitted changes included)",
        f"{args.rounds} rounds, {args.max_tokens} tokens per answer, greedy, {args.threads} "
        "threads, medians; tok/s includes prompt reading",
    ]
    run.finish(
        {"base": sha, "results": results, "summary": rows},
        headers=headers,
        rows=table,
        notes=notes,
        verdicts=[],
        title="smallfirst's batched gateway: working tree against an older commit",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
