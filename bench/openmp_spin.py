"""Our batched gateway at several OpenMP spin counts side by side, on a quiet or a busy machine.

llama.cpp's threads meet at a barrier after every operation of a forward pass; libgomp lets a
thread that arrives first spin ``GOMP_SPINCOUNT`` times before it sleeps (the
``openmp_spin_count`` setting, see src/smallfirst/engines/openmp.py). A short spin costs a
wake-up at many barriers; a long one burns the core another process needs. Which wins
depends on the machine, so this script measures both cases in one run.

One gateway per spin count (``--spins``, default 1000 and 30000, each with the
``adaptive_threads`` setting off unless it ends in ``+adaptive``) and per client count N
(``parallel`` = N, the settings of bench/vs_peers.py). Each round, for each N, every gateway
serves N concurrent greedy chat completions (vs_peers.py's prompts, non-streamed), in an
order that rotates by round. With ``--busy K``, K processes spin on the CPU for the whole
measurement (the machine shared with other work). Figures per spin count and N, medians over
rounds: aggregate tok/s, gateway CPU ms per output token, and tok/s over the first spin
count's in the same round.

    .venv/bin/python bench/openmp_spin.py [--quick] [--spins 1000 300000+adaptive] [--busy 2]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import sys
from collections.abc import Iterator

from harness import script
from harness.procs import scratch_dir
from harness.stats import fmt
from side_by_side import Defaults, Side, interleaved, summary

DEFAULTS = Defaults()


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


def side(text: str) -> Side:
    """``1000`` or ``1000+adaptive``: a gateway with that spin, adaptive_threads off or on."""
    spin, _, suffix = text.partition("+")
    if not spin.isdigit() or suffix not in ("", "adaptive"):
        raise argparse.ArgumentTypeError(f"{text!r}: a spin count, optionally +adaptive")
    settings = {"openmp_spin_count": int(spin), "adaptive_threads": suffix == "adaptive"}
    return Side(f"spin{text}", settings)


def main() -> int:
    p = script.parser(__doc__, area="serving", quick="2 rounds, clients 1 and 4, 32 tokens")
    p.add_argument(
        "--spins",
        nargs="+",
        type=side,
        help="spin counts, each with adaptive_threads off, or on with a '+adaptive' suffix "
        "(default 1000 30000)",
    )
    p.add_argument("--busy", type=int, default=0, help="busy processes beside the gateways")
    DEFAULTS.add_to(p)
    args = p.parse_args()
    sides: list[Side] = args.spins or [side("1000"), side("30000")]
    DEFAULTS.fill(args)
    run = script.start("openmp_spin", "the batched gateway at several OpenMP spin counts", args)
    results, rows = [], []
    with scratch_dir() as logs:
        for name in args.models:
            runs = interleaved(
                sides, name, args.clients, args.rounds, args.max_tokens, logs,
                threads=args.threads, during=busy(args.busy),
            )  # fmt: skip
            results.append({"model": name, "runs": runs})
            rows += summary(runs, [s.label for s in sides], name)
    headers = [
        "model", "clients", "openmp_spin_count (+adaptive_threads on)", "tok/s", "CPU ms/token",
        f"tok/s vs {sides[0].label} (median of rounds)",
    ]  # fmt: skip
    table = [
        [
            r["model"],
            str(r["clients"]),
            r["side"].removeprefix("spin"),
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
