"""Measure a model's energy per input token and per output token (``smallfirst models profile``).

Two kinds of run through the same engine and meter the gateway uses: *prefill* runs (a long
prompt, one output token) give joules per input token; *decode* runs (a short prompt, many
output tokens) give joules per output token after the prefill share of their short prompt
is subtracted. Each kind is repeated and the median taken. The profile records whether the
underlying joules were measured by counters or estimated from CPU time.

Works for local models only (remote ones can be profiled by the operator, in the config).
"""

from __future__ import annotations

import asyncio
import dataclasses
import platform
import statistics
import time
from collections.abc import Callable

from smallfirst.catalog import Catalog
from smallfirst.engines.base import GenerationRequest, Sampling
from smallfirst.engines.llama import LlamaEngine
from smallfirst.errors import EvaluationError, UnknownModelError
from smallfirst.metering.meter import Accountant, EstimateConstants, local_energy
from smallfirst.metering.pricing import Profile
from smallfirst.settings import Settings
from smallfirst.types import Message, Usage

STORY_NAMES = ("Ada", "Bram", "Cleo", "Dario", "Edda", "Finn", "Greta", "Hugo", "Iris")
PREFILL_TEXT = (
    "The history of lighthouses begins with fires on hilltops and grows into towers of stone, "
    "lenses of glass and lamps of oil, kept by people who lived beside the sea. "
)


async def _run(
    engine: LlamaEngine,
    accountant: Accountant,
    constants: EstimateConstants,
    request: GenerationRequest,
) -> tuple[float, Usage, str]:
    slot = accountant.slot()
    request = dataclasses.replace(request, on_compute=slot.set_active)
    usage: Usage | None = None
    async for chunk in engine.generate(request):
        usage = chunk.usage or usage
    energy = local_energy(accountant, slot, constants)
    assert usage is not None and energy.energy_j is not None
    return energy.energy_j, usage, energy.method


def profile_model(
    settings: Settings,
    name: str,
    accountant: Accountant,
    constants: EstimateConstants,
    repeats: int = 3,
    prefill_tokens: int = 512,
    decode_tokens: int = 128,
    progress: Callable[[str], None] | None = None,
) -> Profile:
    catalog = Catalog(settings)
    spec = catalog.get(name)
    path = catalog.file_path(spec)
    if spec.is_remote or path is None or not catalog.is_installed(spec):
        raise UnknownModelError(name, f"{name} is not an installed local model")
    engine = LlamaEngine(spec, path, settings)
    engine.load()
    words = max(1, prefill_tokens * 3 // 4 // len(PREFILL_TEXT.split()))
    long_prompt = PREFILL_TEXT * words

    def request(text: str, max_tokens: int) -> GenerationRequest:
        sampling = Sampling(temperature=0.0, max_tokens=max_tokens)
        if spec.chat:
            return GenerationRequest(sampling, messages=(Message("user", text),))
        return GenerationRequest(sampling, prompt=text)

    async def measure() -> tuple[list[float], list[float], str]:
        per_in: list[float] = []
        per_out: list[float] = []
        method = "estimated"
        await _run(engine, accountant, constants, request("Hello", 4))  # warm-up
        for i in range(repeats):
            # a different prefix each time, so llama.cpp's prompt cache cannot skip work
            j, usage, method = await _run(
                engine, accountant, constants, request(f"{i} {long_prompt}", 1)
            )
            per_in.append(j / usage.prompt_tokens)
            if progress:
                progress(f"prefill {i + 1}/{repeats}: {usage.prompt_tokens} tokens, {j:.2f} J")
        j_in = statistics.median(per_in)
        for i in range(repeats * 3):
            if len(per_out) == repeats:
                break
            keeper = STORY_NAMES[i % len(STORY_NAMES)]
            j, usage, method = await _run(
                engine,
                accountant,
                constants,
                request(
                    f"Write a long story about a lighthouse keeper named {keeper}.", decode_tokens
                ),
            )
            if usage.completion_tokens < decode_tokens // 4:
                continue  # too short an answer to say much about decoding
            per_out.append(max(0.0, j - usage.prompt_tokens * j_in) / usage.completion_tokens)
            if progress:
                progress(
                    f"decode {len(per_out)}/{repeats}: {usage.completion_tokens} tokens, {j:.2f} J"
                )
        if not per_out:
            raise EvaluationError(
                f"{name}: the model never produced a long enough answer to profile"
            )
        return per_in, per_out, method

    try:
        per_in, per_out, method = asyncio.run(measure())
    finally:
        engine.unload()
    cpu = platform.processor() or platform.machine()
    try:
        from smallfirst.metering.power import read_cpu_model

        cpu = read_cpu_model() or cpu
    except OSError:
        pass
    return Profile(
        model=name,
        j_per_input_token=statistics.median(per_in),
        j_per_output_token=statistics.median(per_out),
        method=method,
        source=(
            f"smallfirst models profile on {cpu}, {settings.threads} threads, "
            f"{time.strftime('%Y-%m-%d')}; "
            f"{'counters' if method == 'measured' else constants.source}"
        ),
    )
