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
working tree / base. Greedy answers must be the same on both sides: a difference is counted
in the table (a change that alters answers is not a speed-up).

    .venv/bin/python bench/vs_commit.py [--base REV] [--quick] [--models NAME...] [--clients 1 4 8]
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness import script
from harness.procs import scratch_dir
from harness.stats import fmt
from side_by_side import Defaults, Side, interleaved, summary

REPO = Path(__file__).resolve().parent.parent
DEFAULTS = Defaults(rounds=6)


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


def main() -> int:
    p = script.parser(__doc__, area="serving", quick="Qwen-0.5B, 2 rounds, clients 1 and 4")
    p.add_argument("--base", default="HEAD", help="the revision to compare with (default HEAD)")
    DEFAULTS.add_to(p)
    p.add_argument("--stream", action="store_true", help="stream the answers")
    p.add_argument(
        "--flash-attention",
        choices=["on", "off"],
        help="flash attention on both sides (default: each tree's own default)",
    )
    args = p.parse_args()
    DEFAULTS.fill(args)
    run = script.start("vs_commit", "the working tree against an older commit, side by side", args)
    results, rows = [], []
    with checkout(args.base) as (base, sha), scratch_dir() as logs:
        print(f"  base {args.base} = {sha[:12]}, checked out in {base}", flush=True)
        flash = (
            {}
            if args.flash_attention is None
            else {"flash_attention": args.flash_attention == "on"}
        )
        sides = [
            Side("base", flash, env={**os.environ, "PYTHONPATH": str(base / "src")}),
            Side("tree", flash),
        ]
        for name in args.models:
            runs = interleaved(
                sides, name, args.clients, args.rounds, args.max_tokens, logs,
                threads=args.threads, stream=args.stream,
            )  # fmt: skip
            results.append({"model": name, "runs": runs})
            rows += summary(runs, ["base", "tree"], name)
    tree = {(r["model"], r["clients"]): r for r in rows if r["side"] == "tree"}
    base_rows = [r for r in rows if r["side"] == "base"]
    headers = [
        "model", "clients", "base tok/s", "tree tok/s", "tree/base (median of rounds)",
        "per round", "CPU ms/tok base / tree", "rounds with different answers",
    ]  # fmt: skip
    table = [
        [
            b["model"],
            str(b["clients"]),
            fmt(b["tok_s"], 1),
            fmt(t["tok_s"], 1),
            fmt(t["vs_first"]),
            " ".join(fmt(x) for x in t["round_ratios"]),
            f"{fmt(b['cpu_ms_per_token'], 1)} / {fmt(t['cpu_ms_per_token'], 1)}",
            str(t["answers_differ"]),
        ]
        for b in base_rows
        for t in [tree[b["model"], b["clients"]]]
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
