"""Our batched gateway at several OpenMP spin counts side by side, on a quiet or a busy machine.

llama.cpp's threads meet at a barrier after every operation of a forward pass; libgomp lets a
thread that arrives first spin ``GOMP_SPINCOUNT`` times before it sleeps (the
``openmp_spin_count`` setting, see src/smallfirst/engines/openmp.py). A short spin costs a
wake-up at many barriers; a long one burns the core another process needs. Which wins
depends on the machine, so this script measures both cases in one run.

One gateway per spin count (``--spins``, default 1000 and 30000) and per client count N
(``parallel`` = N, the settings of bench/vs_peers.py). Each round, for each N, every gateway
serves N concurrent greedy chat completions (vs_peers.py's prompts, non-streamed), in an
order that rotates by round. With ``--busy K``, K processes spin on the CPU for the whole
measurement (the machine shared with other work). Figures per spin count and N, medians over
rounds: aggregate tok/s, gateway CPU ms per output token, and tok/s over the first spin
count's in the same round.

    .venv/bin/python bench/openmp_spin.py [--quick] [--spins 1000 30000] [--busy 2]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import script
from harness.gateway import Gateway, running_gateway
from harness.procs import scratch_dir
from harness.stats import fmt, median, ratio
from vs_peers import batched_settings, body, burst


def spin_forever() -> None:  # a busy neighbour
    while True:
        pass


@contextlib.contextmanager
def busy(k: int) -> Iterator[None]:
    """``k`` processes that keep a core busy each, until the block ends."""
    procs = [multiprocessing.Process(target=spin_forever, daemon=True) for _ in range(k)]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.join()


@contextlib.contextmanager
def gateways(
    args: argparse.Namespace, name: str, logs: Path
) -> Iterator[dict[tuple[int, int], Gateway]]:
    with contextlib.ExitStack() as stack:
        started = {}
        for n in args.clients:
            for spin in args.spins:
                started[spin, n] = stack.enter_context(
                    running_gateway(
                        logs,
                        name=f"spin{spin}-{name}-p{n}",
                        settings=batched_settings(n, False, spin),
                        threads=args.threads,
                    )
                )
        yield started


def bench_model(args: argparse.Namespace, name: str, logs: Path) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with gateways(args, name, logs) as started:
        for gw in started.values():
            burst(gw.url, gw.child.pid, [body(name, -1, 0, 8)])  # load and warm the model
        with busy(args.busy):
            for round_no in range(args.rounds):
                shift = round_no % len(args.spins)
                order = args.spins[shift:] + args.spins[:shift]
                for n in args.clients:
                    bodies = [body(name, round_no, c, args.max_tokens) for c in range(n)]
                    for spin in order:
                        gw = started[spin, n]
                        figures = burst(gw.url, gw.child.pid, bodies)
                        figures.pop("texts")
                        runs.append({"spin": spin, "clients": n, "round": round_no, **figures})
                        print(
                            f"  {name} round {round_no} spin {spin} x{n}: "
                            f"{figures['tok_s']:.1f} tok/s, "
                            f"{figures['cpu_ms_per_token']:.1f} CPU ms/token",
                            flush=True,
                        )
    return {"model": name, "runs": runs}


def summary(result: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    first = args.spins[0]
    for n in args.clients:
        for spin in args.spins:
            mine = [r for r in result["runs"] if r["clients"] == n and r["spin"] == spin]
            base = {
                r["round"]: r["tok_s"]
                for r in result["runs"]
                if r["clients"] == n and r["spin"] == first
            }
            rows.append(
                {
                    "model": result["model"],
                    "clients": n,
                    "spin": spin,
                    "tok_s": median([r["tok_s"] for r in mine]),
                    "cpu_ms_per_token": median([r["cpu_ms_per_token"] for r in mine]),
                    "vs_first": median([ratio(r["tok_s"], base[r["round"]]) for r in mine]),
                }
            )
    return rows


def main() -> int:
    p = script.parser(__doc__, area="serving", quick="2 rounds, clients 1 and 4, 32 tokens")
    p.add_argument("--spins", nargs="+", type=int, help="spin counts (default 1000 30000)")
    p.add_argument("--busy", type=int, default=0, help="busy processes beside the gateways")
    p.add_argument("--models", nargs="+", help="catalog names (default: Qwen-Coder 0.5B)")
    p.add_argument("--clients", nargs="+", type=int, help="client counts (default 1 4 8)")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    p.add_argument("--rounds", type=int, help="rounds (default 4; quick 2)")
    p.add_argument("--max-tokens", type=int, help="tokens per answer (default 96; quick 32)")
    args = p.parse_args()
    args.spins = args.spins or [1000, 30000]
    args.models = args.models or ["qwen2.5-coder-0.5b-instruct"]
    args.clients = sorted(args.clients or ([1, 4] if args.quick else [1, 4, 8]))
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.max_tokens = args.max_tokens or (32 if args.quick else 96)
    run = script.start("openmp_spin", "the batched gateway at several OpenMP spin counts", args)
    results, rows = [], []
    with scratch_dir() as logs:
        for name in args.models:
            result = bench_model(args, name, logs)
            results.append(result)
            rows += summary(result, args)
    headers = [
        "model", "clients", "openmp_spin_count", "tok/s", "CPU ms/token",
        f"tok/s vs spin {args.spins[0]} (median of rounds)",
    ]  # fmt: skip
    table = [
        [
            r["model"],
            str(r["clients"]),
            str(r["spin"]),
            fmt(r["tok_s"], 1),
            fmt(r["cpu_ms_per_token"], 1),
            fmt(r["vs_first"]),
        ]
        for r in rows
    ]
    notes = [
        f"{args.busy} busy processes beside the gateways"
        + (" (a shared machine)" if args.busy else " (a quiet machine, as far as ours go)"),
        f"{args.rounds} rounds, {args.max_tokens} tokens per answer, greedy, {args.threads} "
        "threads, medians; tok/s includes prompt reading",
    ]
    run.finish(
        {"results": results, "summary": rows},
        headers=headers,
        rows=table,
        notes=notes,
        title=f"OpenMP spin counts side by side ({args.busy} busy processes)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
