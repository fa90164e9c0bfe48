"""``smallfirst batch``: carbon-aware batches from the command line.

    smallfirst batch simulate [--signal file:PATH] [--days 365] [--batches-per-day 24]
        [--window 24h] [--lines-per-batch 1000] [--energy-wh-per-line X] [--line-s S]
        [--seed 0] [--plot out.png] [--json]

``simulate`` replays a year of a carbon trace on a virtual clock, without models, and
reports what the planner saves against running each batch at submission (the forecasts it
tries, the oracle, the fleet view). Thin: :mod:`smallfirst.scheduling.simulate` does the
work and :mod:`smallfirst.scheduling.simplot` draws.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from smallfirst.cli.common import settings_from

__all__ = ["add_parser"]

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"  # the ladder's middle rung: its shipped profile


def _window_h(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*h\s*", text)
    if not match or not 0 < float(match.group(1)) <= 168:
        raise argparse.ArgumentTypeError(f"{text!r}: give hours as '<N>h', at most 168h")
    return float(match.group(1))


def _assumptions(args: argparse.Namespace, settings: Any) -> Any:
    from smallfirst.metering.pricing import ProfileBook
    from smallfirst.scheduling.simulate import LINE_OUTPUT_TOKENS_PER_S, Assumptions

    source = "given (--energy-wh-per-line)"
    energy = args.energy_wh_per_line
    if energy is None:
        profile = ProfileBook(settings.data_dir / "profiles.json").get(args.model)
        if profile is None:
            raise SystemExit(f"smallfirst: no energy profile for {args.model!r}")
        energy = profile.energy_j(args.input_tokens, args.output_tokens) / 3600
        source = (
            f"{args.model}'s profile ({profile.method}: {profile.source}) x "
            f"{args.input_tokens} input + {args.output_tokens} output tokens per line"
        )
    line_s = args.line_s or args.output_tokens / LINE_OUTPUT_TOKENS_PER_S
    return Assumptions(
        lines_per_batch=args.lines_per_batch,
        energy_wh_per_line=energy,
        work_s_per_line=line_s,
        window_h=args.window,
        margin_s=settings.schedule_margin_s if args.margin_s is None else args.margin_s,
        energy_source=source,
    )


def cmd_batch_simulate(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from smallfirst.errors import ConfigError
    from smallfirst.scheduling.signal import open_signal
    from smallfirst.scheduling.simulate import simulate
    from smallfirst.scheduling.tracefile import FileSignal

    settings = settings_from(args)
    try:
        signal = open_signal(args.signal, settings)
    except ConfigError as exc:
        raise SystemExit(f"smallfirst: {exc.message}") from None
    if not isinstance(signal, FileSignal):
        raise SystemExit(
            "smallfirst: simulate replays a trace: --signal file:PATH or file:embedded"
        )
    assumptions = _assumptions(args, settings)
    with Progress(
        "simulating",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        disable=args.json or not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("simulate", total=None)
        sim = simulate(
            signal.values,
            days=args.days,
            batches_per_day=args.batches_per_day,
            assumptions=assumptions,
            seed=args.seed,
            name=signal.name,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if args.plot:
        from smallfirst.scheduling.simplot import plot_simulation

        try:
            plot_simulation(sim, args.plot)
        except ConfigError as exc:
            raise SystemExit(f"smallfirst: {exc.message}") from None
    if args.json:
        print(json.dumps(sim.to_json(), indent=2))
    else:
        print(report(sim, args.plot))
    return 0


def report(sim: Any, plot: Any = None) -> str:
    """The simulation as text: assumptions, savings per forecast, the fleet view."""
    a = sim.assumptions
    lines = [
        f"{sim.signal}: {sim.submitted} batches at uniformly random moments over {sim.days} "
        f"days (seed {sim.seed}); {sim.skipped} skipped (the trace lacks an hour they need)",
        f"  a batch: {a.lines_per_batch} lines x {a.energy_wh_per_line:.4g} Wh = "
        f"{a.energy_wh:.4g} Wh over {a.work_s / 3600:.2f} h of work; window {a.window_h:g} h, "
        f"margin {a.margin_s / 60:g} min",
        f"  energy per line: {a.energy_source}",
        f"  at submission: {sim.at_submission_mean_g:.4g} g CO2e per batch on average",
        "",
        f"  {'g CO2e saved per batch':<36}{'mean':>9}{'p10':>9}{'p50':>9}{'p90':>9}"
        f"{'mean %':>8}{'of oracle':>11}",
    ]
    rows = [("oracle (cleanest hours, no margin)", sim.oracle)]
    rows += [(f"forecast: {f}", s) for f, s in sim.by_forecast.items()]
    for label, s in rows:
        lines.append(
            f"  {label:<36}{s.mean_g:9.4g}{s.p10_g:9.4g}{s.p50_g:9.4g}{s.p90_g:9.4g}"
            f"{s.mean_pct:7.1f}%{s.of_oracle * 100:10.0f}%"
        )
    lines += [
        "",
        "  forecasts: perfect is the trace itself; profile (the realistic one) the last 14 days' "
        "mean for the hour, shifted by the last observed hour's deviation (fading over 24 h);",
        "  persistence yesterday's same hour; noisyN the trace with N % Gaussian error per hour",
        "  fleet view (profile forecast, the same saving per line):",
    ]
    for row in sim.fleet("profile"):
        lines.append(
            f"    {row['lines_per_day']:.0e} lines/day: {row['energy_mwh_per_day']:.4g} MWh/day, "
            f"{row['at_submission_t_per_year']:.4g} t CO2e/year at submission, saves "
            f"{row['saved_kg_per_day']:.4g} kg/day = {row['saved_t_per_year']:.4g} t/year"
        )
    if plot:
        lines.append(f"  plot: {plot}")
    return "\n".join(lines)


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    from pathlib import Path

    batch = sub.add_parser("batch", help="carbon-aware batches: simulate a year of scheduling")
    cmds = batch.add_subparsers(dest="batch_command", required=True)
    sim = cmds.add_parser(
        "simulate",
        parents=[common],
        help="replay a carbon trace on a virtual clock; report the saving (no models)",
    )
    sim.add_argument("--signal", default="file:embedded", help="file:PATH or file:embedded")
    sim.add_argument("--days", type=int, default=365)
    sim.add_argument("--batches-per-day", type=float, default=24.0)
    sim.add_argument("--window", type=_window_h, default=24.0, help="completion window, '<N>h'")
    sim.add_argument("--lines-per-batch", type=int, default=1000)
    sim.add_argument("--energy-wh-per-line", type=float, help="default: from --model's profile")
    sim.add_argument("--model", default=DEFAULT_MODEL, help="whose energy profile to use")
    sim.add_argument("--input-tokens", type=int, default=200, help="per line")
    sim.add_argument("--output-tokens", type=int, default=100, help="per line")
    sim.add_argument(
        "--line-s", type=float, help="seconds of work per line (default: output tokens / 44 tok/s)"
    )
    sim.add_argument("--margin-s", type=float, help="default: the schedule_margin_s setting")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--plot", type=Path, help="write a PNG of the distribution here")
    sim.add_argument("--json", action="store_true", help="print the results as JSON")
    sim.set_defaults(func=cmd_batch_simulate)
