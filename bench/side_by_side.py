"""Several variants of our batched gateway side by side: the same bursts, interleaved rounds.

A variant ("side") is a label, settings on top of bench/vs_peers.py's (``parallel`` = N, 2048
tokens per slot) and optionally its own environment. For each client count N every side gets
its own gateway; each round sends N concurrent greedy chat completions (vs_peers.py's
prompts) to every side in an order that rotates by round, so that the host's drift falls on
all of them alike. The figures are the medians over rounds and each side's tok/s over the
first side's *in the same round*.

bench/vs_commit.py (two code trees), bench/openmp_spin.py (spin counts) and
bench/flash_attention.py (off against on) are built on it (a module beside the scripts, as
vs_peers.py, whose bursts it reuses); the comparison against llama.cpp's own server stays in
vs_peers.py.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.gateway import Gateway, running_gateway
from harness.stats import median, ratio
from vs_peers import batched_settings, body, burst

__all__ = ["Defaults", "Side", "interleaved", "summary"]

QWEN_05 = "qwen2.5-coder-0.5b-instruct"


@dataclass(frozen=True)
class Defaults:
    """The arguments every side-by-side script takes (models, clients, threads, rounds,
    tokens per answer) and each script's defaults for them, full and ``--quick``."""

    clients: tuple[int, ...] = (1, 4, 8)
    rounds: int = 4
    models: tuple[str, ...] = (QWEN_05,)
    quick_models: tuple[str, ...] = (QWEN_05,)
    quick_clients: tuple[int, ...] = (1, 4)
    quick_rounds: int = 2

    def add_to(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--models", nargs="+", help=f"catalog names (default: {_s(self.models)})")
        p.add_argument(
            "--clients", nargs="+", type=int, help=f"client counts (default {_s(self.clients)})"
        )
        p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, every side")
        p.add_argument(
            "--rounds", type=int, help=f"rounds (default {self.rounds}; quick {self.quick_rounds})"
        )
        p.add_argument("--max-tokens", type=int, help="tokens per answer (default 96; quick 32)")

    def fill(self, args: argparse.Namespace) -> None:
        """Put the defaults (``--quick``'s where asked) in the arguments left out."""
        quick = bool(getattr(args, "quick", False))
        args.models = args.models or list(self.quick_models if quick else self.models)
        args.clients = sorted(args.clients or (self.quick_clients if quick else self.clients))
        args.rounds = args.rounds or (self.quick_rounds if quick else self.rounds)
        args.max_tokens = args.max_tokens or (32 if quick else 96)


def _s(values: tuple[object, ...]) -> str:
    return " ".join(str(v) for v in values)


@dataclass(frozen=True)
class Side:
    """One variant of the gateway: its settings beyond the batched defaults, its env."""

    label: str
    settings: Mapping[str, bool | int] = field(default_factory=dict)
    env: Mapping[str, str] | None = None


@contextlib.contextmanager
def _gateways(
    sides: list[Side], clients: list[int], threads: int, model: str, logs: Path
) -> Iterator[dict[tuple[str, int], Gateway]]:
    with contextlib.ExitStack() as stack:
        started = {}
        for n in clients:
            for side in sides:
                started[side.label, n] = stack.enter_context(
                    running_gateway(
                        logs,
                        name=f"{side.label}-{model}-p{n}",
                        settings={**batched_settings(n), **side.settings},
                        threads=threads,
                        env=side.env,
                    )
                )
        yield started


def interleaved(
    sides: list[Side],
    model: str,
    clients: list[int],
    rounds: int,
    max_tokens: int,
    logs: Path,
    *,
    threads: int = 2,
    stream: bool = False,
    during: contextlib.AbstractContextManager[Any] | None = None,
) -> list[dict[str, Any]]:
    """Every side's bursts, round by round (inside ``during``, once all are warm). Each run
    records whether its answers differed from the first side's in the same burst."""
    runs: list[dict[str, Any]] = []
    labels = [s.label for s in sides]
    with _gateways(sides, clients, threads, model, logs) as started:
        for gw in started.values():
            burst(gw.url, gw.child.pid, [body(model, -1, 0, 8)])  # load and warm the model
        with during or contextlib.nullcontext():
            for round_no in range(rounds):
                shift = round_no % len(labels)
                order = labels[shift:] + labels[:shift]
                for n in clients:
                    bodies = [body(model, round_no, c, max_tokens) for c in range(n)]
                    texts: dict[str, list[str]] = {}
                    for label in order:
                        gw = started[label, n]
                        figures = burst(gw.url, gw.child.pid, bodies, stream)
                        texts[label] = figures.pop("texts")
                        runs.append({"side": label, "clients": n, "round": round_no, **figures})
                        print(
                            f"  {model} round {round_no} {label} x{n}: "
                            f"{figures['tok_s']:.1f} tok/s, "
                            f"{figures['cpu_ms_per_token']:.1f} CPU ms/token",
                            flush=True,
                        )
                    for run in runs[-len(labels) :]:
                        run["answers_differ"] = texts[run["side"]] != texts[labels[0]]
    return runs


def summary(runs: list[dict[str, Any]], labels: list[str], model: str) -> list[dict[str, Any]]:
    """Per client count and side: median tok/s and CPU ms per token, the per-round ratios
    to the first side's tok/s and their median, and the rounds whose answers differed."""
    rows = []
    for n in sorted({r["clients"] for r in runs}):
        first = {
            r["round"]: r["tok_s"] for r in runs if r["clients"] == n and r["side"] == labels[0]
        }
        for label in labels:
            mine = [r for r in runs if r["clients"] == n and r["side"] == label]
            ratios = [ratio(r["tok_s"], first[r["round"]]) for r in mine]
            rows.append(
                {
                    "model": model,
                    "clients": n,
                    "side": label,
                    "tok_s": median([r["tok_s"] for r in mine]),
                    "cpu_ms_per_token": median([r["cpu_ms_per_token"] for r in mine]),
                    "vs_first": median(ratios),
                    "round_ratios": ratios,
                    "answers_differ": sum(1 for r in mine if r["answers_differ"]),
                }
            )
    return rows
