"""Our CPU-time energy estimate beside CodeCarbon's, on the same workload in the same run.

The workload: in-process generations with the engine the gateway uses (SmolLM2-135M and
Qwen2.5-Coder-0.5B, greedy, fixed prompts). Around it, at the same time, run

* smallfirst's meter (an accounting slot active while each generation holds its model), and
* CodeCarbon's ``OfflineEmissionsTracker`` in ``tracking_mode="process"`` (it samples this
  process's CPU load and memory every ``--measure-power-secs``).

Both are estimates on this machine (no RAPL here); the point is to see how far apart two
estimators are and why. Reported: each one's energy in joules, CPU and RAM parts, the ratio,
and CodeCarbon's reported powers.

    .venv/bin/python bench/energy_vs_codecarbon.py [--quick]
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from harness import script
from harness.gateway import model_path
from harness.machine import package_version
from harness.stats import fmt
from smallfirst.catalog import Catalog
from smallfirst.engines.base import GenerationRequest, Sampling
from smallfirst.engines.llama import LlamaEngine
from smallfirst.metering.meter import Accountant, EstimateConstants, local_energy
from smallfirst.metering.power import cpu_power
from smallfirst.settings import Settings
from smallfirst.types import Message

PROMPTS = (
    "Write a long story about a lighthouse keeper.",
    "Explain how a refrigerator works, step by step.",
    "Write a Python function that merges two sorted lists, with tests.",
)


async def workload(
    engines: list[LlamaEngine],
    acc: Accountant,
    constants: EstimateConstants,
    tokens: int,
    rounds: int,
) -> tuple[float, float, float, int]:
    """Run every prompt on every engine; return (energy J, cpu s, shared wall s, tokens)."""
    energy_j = cpu_s = wall_s = 0.0
    produced = 0
    for _ in range(rounds):
        for engine in engines:
            for prompt in PROMPTS:
                slot = acc.slot()
                request = GenerationRequest(
                    Sampling(temperature=0.0, max_tokens=tokens),
                    messages=(Message("user", prompt),),
                    on_compute=slot.set_active,
                )
                async for chunk in engine.generate(request):
                    if chunk.usage:
                        produced += chunk.usage.completion_tokens
                e = local_energy(acc, slot, constants)
                assert e.energy_j is not None
                energy_j += e.energy_j
                cpu_s += slot.cpu_s
                wall_s += slot.shared_wall_s
    return energy_j, cpu_s, wall_s, produced


def track(
    engines: list[LlamaEngine], constants: EstimateConstants, tokens: int, rounds: int, secs: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The workload under both estimators at once: (smallfirst's figures, CodeCarbon's)."""
    from codecarbon import OfflineEmissionsTracker

    acc = Accountant()
    asyncio.run(workload(engines, acc, constants, 8, 1))  # warm up outside both measurements
    tracker = OfflineEmissionsTracker(
        country_iso_code="USA",
        tracking_mode="process",
        measure_power_secs=secs,
        save_to_file=False,
        log_level="error",
    )
    tracker.start()
    t0 = time.perf_counter()
    energy_j, cpu_s, wall_s, produced = asyncio.run(
        workload(engines, acc, constants, tokens, rounds)
    )
    duration_s = time.perf_counter() - t0
    tracker.stop()
    data = tracker.final_emissions_data
    cc: dict[str, Any] = {
        "energy_j": data.energy_consumed * 3.6e6,
        "cpu_energy_j": data.cpu_energy * 3.6e6,
        "ram_energy_j": data.ram_energy * 3.6e6,
        "gpu_energy_j": data.gpu_energy * 3.6e6,
        "cpu_power_w": data.cpu_power,
        "ram_power_w": data.ram_power,
        "cpu_model": data.cpu_model,
        "tracking_mode": data.tracking_mode,
        "duration_s": data.duration,
    }
    ours = {
        "energy_j": energy_j,
        "cpu_energy_j": cpu_s * constants.watts_per_thread,
        "ram_energy_j": wall_s * constants.ram_w,
        "cpu_s": cpu_s,
        "active_wall_s": wall_s,
        "watts_per_thread": constants.watts_per_thread,
        "ram_w": constants.ram_w,
        "constants_source": constants.source,
        "tokens_produced": produced,
        "duration_s": duration_s,
    }
    return ours, cc


def main(argv: Sequence[str] | None = None) -> int:
    p = script.parser(__doc__, area="metering", quick="SmolLM2 only, one round")
    p.add_argument("--tokens", type=int, default=256, help="max tokens per generation")
    p.add_argument("--rounds", type=int, help="passes over the prompts (default 3; quick 1)")
    p.add_argument("--measure-power-secs", type=float, default=1.0, help="CodeCarbon's interval")
    p.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    args = p.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    run = script.start(
        "energy_vs_codecarbon", "energy: smallfirst estimate vs CodeCarbon (process mode)", args
    )
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    settings = Settings(n_threads=args.threads)
    catalog = Catalog(settings)
    names = ["smollm2-135m-instruct"] + ([] if args.quick else ["qwen2.5-coder-0.5b-instruct"])
    engines = []
    for name in names:
        engine = LlamaEngine(catalog.get(name), model_path(name), settings)
        engine.load()
        engines.append(engine)
    power = cpu_power(watts_per_thread=settings.watts_per_thread)
    constants = EstimateConstants(power.watts_per_thread, power.ram_w, power.source)
    try:
        ours, cc = track(engines, constants, args.tokens, rounds, args.measure_power_secs)
    finally:
        for engine in engines:
            engine.unload()
    produced = ours.pop("tokens_produced")
    duration_s = ours.pop("duration_s")
    ratio = ours["energy_j"] / cc["energy_j"] if cc["energy_j"] else float("nan")
    notes = [
        f"workload: {len(engines)} model(s) ({', '.join(names)}) × {len(PROMPTS)} prompts × "
        f"{rounds} round(s), greedy, max {args.tokens} tokens; {produced} tokens produced in "
        f"{duration_s:.1f} s",
        f"smallfirst: {ours['cpu_s']:.2f} CPU-s × {constants.watts_per_thread:g} W/thread + "
        f"{ours['active_wall_s']:.2f} s active × {constants.ram_w:g} W RAM ({constants.source})",
        f"CodeCarbon {package_version('codecarbon')}: CPU power {cc['cpu_power_w']:.2f} W, RAM "
        f"power {cc['ram_power_w']:.2f} W (averages it reported), tracked "
        f"{cc['duration_s']:.1f} s, cpu model seen: {cc['cpu_model']}",
    ]
    result = {
        "parameters": {k: v for k, v in vars(args).items() if k != "out"}
        | {"rounds": rounds, "models": names},
        "tokens_produced": produced,
        "duration_s": duration_s,
        "smallfirst": ours,
        "codecarbon": cc,
        "ratio_energy": ratio,
    }
    run.finish(
        result,
        headers=["estimator", "energy J", "CPU part J", "RAM part J", "J per output token"],
        rows=table(ours, cc, produced, ratio),
        notes=notes,
        title="Energy: smallfirst's estimate vs CodeCarbon",
        echo_notes=True,
    )
    return 0


def table(ours: dict[str, Any], cc: dict[str, Any], produced: int, ratio: float) -> list[list[str]]:
    """One row per estimator and one of their ratios."""
    energy_j = ours["energy_j"]
    return [
        [
            "smallfirst (CPU-time estimate)",
            fmt(energy_j, 1),
            fmt(ours["cpu_energy_j"], 1),
            fmt(ours["ram_energy_j"], 1),
            fmt(energy_j / produced, 4),
        ],
        [
            "CodeCarbon OfflineEmissionsTracker, process mode",
            fmt(cc["energy_j"], 1),
            fmt(cc["cpu_energy_j"], 1),
            fmt(cc["ram_energy_j"], 1),
            fmt(cc["energy_j"] / produced, 4),
        ],
        [
            "ratio smallfirst / CodeCarbon",
            fmt(ratio, 3),
            fmt(ours["cpu_energy_j"] / cc["cpu_energy_j"], 3) if cc["cpu_energy_j"] else "-",
            fmt(ours["ram_energy_j"] / cc["ram_energy_j"], 3) if cc["ram_energy_j"] else "-",
            "",
        ],
    ]


if __name__ == "__main__":
    sys.exit(main())
