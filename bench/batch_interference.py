"""Live requests while a batch runs, and one real batch: what the Batch API costs and saves.

One ``smallfirst serve`` (the batched engine, ``parallel`` 4, so the runner keeps at most 3
batch lines in flight and one slot free) answers both parts, on ``--model`` (SmolLM2-135M).

**Part 1, interference** (issue #19's acceptance: a live request's first token no later
than without the batch plus one decode step). Interleaved rounds: ``--samples`` streaming
chat requests (8 tokens each, one after another) with no batch running, then the same while
a batch of ``--busy-lines`` lines (64 tokens each) runs; that batch is cancelled at the end
of its round. Reported: p50 time to first token idle and busy, their difference, and one
decode step (p50 inter-token time of the idle streams) to hold the difference against.

**Part 2, one real batch** of ``--lines`` chat lines (32 tokens each, at once: the default
``constant`` signal): wall time from create to ``completed``, lines per second, energy and
gCO2 summed from the lines' receipts; then what the planner would have chosen for that same
measured work and energy over the embedded California ISO 2022 trace (``file:embedded``,
replayed on today's date, a 24-hour window from now): gCO2 as scheduled, at submission and
in the window's worst hours. Those three are the planner's figures for this run's measured
energy, not a second run.

    .venv/bin/python bench/batch_interference.py [--quick] [--rounds 3] [--lines 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from harness import script
from harness.gateway import running_gateway
from harness.procs import scratch_dir
from harness.sse import openai_client, stream_chat
from harness.stats import fmt, median
from smallfirst.scheduling.planner import plan
from smallfirst.scheduling.signal import open_signal
from smallfirst.settings import Settings

MODEL = "smollm2-135m-instruct"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = script.parser(__doc__, area="batches", quick="1 round, 50 lines")
    p.add_argument("--model", default=MODEL)
    p.add_argument("--rounds", type=int, help="interleaved idle/busy rounds (default 3)")
    p.add_argument("--samples", type=int, default=5, help="live requests per round and state")
    p.add_argument("--busy-lines", type=int, default=60, help="lines of the batch in part 1")
    p.add_argument("--lines", type=int, help="lines of the real batch (default 200)")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.lines = args.lines or (50 if args.quick else 200)
    return args


def jsonl(model: str, n: int, max_tokens: int, tag: str) -> bytes:
    lines = [
        {
            "custom_id": f"{tag}-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": model,
                "messages": [
                    {"role": "user", "content": f"Write a sentence about the number {i}."}
                ],
                "max_tokens": max_tokens,
            },
        }
        for i in range(n)
    ]
    return ("\n".join(json.dumps(x) for x in lines) + "\n").encode()


def submit(client: httpx.Client, content: bytes) -> str:
    up = client.post("/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch"})
    up.raise_for_status()
    made = client.post(
        "/batches",
        json={
            "input_file_id": up.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    made.raise_for_status()
    return str(made.json()["id"])


def wait(client: httpx.Client, batch_id: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    while True:
        batch: dict[str, Any] = client.get(f"/batches/{batch_id}").json()
        if batch["status"] in statuses:
            return batch
        time.sleep(0.05)


def live(client: httpx.Client, model: str, n: int) -> tuple[list[float], list[float]]:
    """``n`` streams one after another: their TTFTs and their inter-token times."""
    ttfts, steps = [], []
    for i in range(n):
        stats = stream_chat(client, model, [{"role": "user", "content": f"Hi {i}"}], 8)
        ttfts.append(stats.ttft_s)
        if stats.decode_tps > 0:
            steps.append(1.0 / stats.decode_tps)
    return ttfts, steps


def interference(client: httpx.Client, args: argparse.Namespace) -> dict[str, Any]:
    idle: list[float] = []
    busy: list[float] = []
    steps: list[float] = []
    for r in range(args.rounds):
        t, s = live(client, args.model, args.samples)
        idle += t
        steps += s
        batch_id = submit(client, jsonl(args.model, args.busy_lines, 64, f"busy{r}"))
        wait(client, batch_id, ("in_progress",))
        time.sleep(0.5)  # the runner has its lines in flight
        t, _ = live(client, args.model, args.samples)
        still = client.get(f"/batches/{batch_id}").json()["status"]
        busy += t
        client.post(f"/batches/{batch_id}/cancel")
        wait(client, batch_id, ("cancelled", "completed"))
        line = f"idle p50 {median(idle) * 1000:.0f} ms, busy p50 {median(busy) * 1000:.0f} ms"
        print(f"  round {r + 1}: {line} (batch {still} while measured)", flush=True)
    return {
        "idle_ttft_s": idle,
        "busy_ttft_s": busy,
        "decode_step_s": median(steps) if steps else None,
    }


def real_batch(client: httpx.Client, args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    batch_id = submit(client, jsonl(args.model, args.lines, 32, "real"))
    done = wait(client, batch_id, ("completed", "failed", "expired"))
    wall_s = time.perf_counter() - start
    out = client.get(f"/files/{done['output_file_id']}/content").text.splitlines()
    receipts = [json.loads(x)["response"]["body"]["smallfirst"] for x in out]
    energy_j = sum(r["energy"]["energy_j"] or 0.0 for r in receipts)
    co2_g = sum(r["carbon"]["co2_g"] or 0.0 for r in receipts)
    now = datetime.now(UTC)
    settings = Settings(carbon_signal="file:embedded")
    trace = open_signal("file:embedded", settings)
    planned = plan(now, now + timedelta(hours=24), wall_s, energy_j / 3600.0, trace)
    return {
        "status": done["status"],
        "lines": args.lines,
        "completed": done["request_counts"]["completed"],
        "wall_s": wall_s,
        "energy_j": energy_j,
        "energy_methods": sorted({r["energy"]["method"] for r in receipts}),
        "co2_g_as_run": co2_g,
        "grid_g_per_kwh": receipts[0]["carbon"]["grid_g_per_kwh"] if receipts else None,
        "ciso_2022": {
            "reason": planned.reason,
            "hours": [h.isoformat() for h in planned.hours],
            "expected_g": planned.expected_g,
            "at_submission_g": planned.at_submission_g,
            "worst_g": planned.worst_g,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run = script.start("batch_interference", "Batch API: interference and one real batch", args)
    settings = {"parallel": 4, "default_router": False, "batch_tick_s": 0.05}
    # a data directory of its own (its receipts and files), the shared one's models
    models = str(Settings().models_path)
    with scratch_dir() as tmp, running_gateway(
        tmp,
        default_model=args.model,
        settings={**settings, "data_dir": str(tmp / "data"), "models_dir": models},
    ) as gw, openai_client(gw.base_url) as client:  # fmt: skip
        live(client, args.model, 2)  # load and warm the model
        part1 = interference(client, args)
        part2 = real_batch(client, args)
    idle, busy = median(part1["idle_ttft_s"]), median(part1["busy_ttft_s"])
    step = part1["decode_step_s"]
    c = part2["ciso_2022"]
    rows = [
        ["live TTFT p50, no batch (ms)", fmt(idle * 1000, 1)],
        ["live TTFT p50, batch running (ms)", fmt(busy * 1000, 1)],
        ["difference (ms)", fmt((busy - idle) * 1000, 1)],
        ["one decode step, p50 (ms)", fmt(step * 1000 if step else None, 1)],
        [f"real batch: {part2['lines']} lines, wall (s)", fmt(part2["wall_s"], 1)],
        ["real batch: lines/s", fmt(part2["lines"] / part2["wall_s"], 2)],
        ["real batch: energy (J, " + "/".join(part2["energy_methods"]) + ")",
         fmt(part2["energy_j"], 1)],
        [f"real batch: gCO2 as run ({fmt(part2['grid_g_per_kwh'], 0)} g/kWh)",
         fmt(part2["co2_g_as_run"], 4)],
        ["CISO 2022 plan: gCO2 as scheduled", fmt(c["expected_g"], 4)],
        ["CISO 2022 plan: gCO2 at submission", fmt(c["at_submission_g"], 4)],
        ["CISO 2022 plan: gCO2 in the worst hours", fmt(c["worst_g"], 4)],
    ]  # fmt: skip
    verdict = (
        f"busy - idle TTFT = {(busy - idle) * 1000:.1f} ms against one decode step "
        f"{(step or 0) * 1000:.1f} ms: " + ("within" if step and busy - idle <= step else "over")
    )
    run.finish(
        {"interference": part1, "real_batch": part2, "settings": settings},
        headers=["figure", "value"],
        rows=rows,
        verdicts=[verdict],
        notes=[f"CISO plan: {c['reason']}; hours {', '.join(c['hours'])}"],
        echo_notes=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
