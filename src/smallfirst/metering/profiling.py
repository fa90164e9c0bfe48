"""Measure a model's energy per input token and per output token (``smallfirst models profile``).

Two kinds of run through the same engine and meter the gateway uses: *prefill* runs (a long
prompt, one output token) give joules per input token; *decode* runs (a short prompt, many
output tokens) give joules per output token after the prefill share of their short prompt
is subtracted. Each kind is repeated and the median taken. The profile records whether the
underlying joules were measured by counters or estimated from CPU time, and over what.

A local model runs in-process, metered in its own slot. A remote model (llama-server, vLLM...)
is profiled over HTTP through the gateway's remote engine when its server runs on this
machine and the operator names its process (``pid``): :mod:`.upstream_probe` meters each
request there. A remote model on another machine cannot be measured from here; its
operator configures ``profiles.NAME`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import platform
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from smallfirst.catalog import Catalog, ModelSpec
from smallfirst.engines.base import GenerationRequest, Sampling
from smallfirst.engines.llama import LlamaEngine
from smallfirst.engines.remote import RemoteEngine
from smallfirst.errors import ConfigError, EvaluationError, UnknownModelError
from smallfirst.metering.meter import Accountant, EstimateConstants, local_energy
from smallfirst.metering.pricing import Profile
from smallfirst.metering.upstream_probe import UpstreamProbe
from smallfirst.settings import Settings
from smallfirst.types import Message, Usage

STORY_NAMES = ("Ada", "Bram", "Cleo", "Dario", "Edda", "Finn", "Greta", "Hugo", "Iris")
PREFILL_TEXT = (
    "The history of lighthouses begins with fires on hilltops and grows into towers of stone, "
    "lenses of glass and lamps of oil, kept by people who lived beside the sea. "
)


Progress = Callable[[str], None]


class _Probe(Protocol):
    async def run(self, text: str, max_tokens: int) -> tuple[float, Usage, str]:
        """Joules, usage and energy method of one greedy generation."""
        ...


@dataclass(frozen=True, slots=True)
class _LocalProbe:
    """One loaded model, metered in its own slot per run."""

    engine: LlamaEngine
    accountant: Accountant
    constants: EstimateConstants
    chat: bool

    async def run(self, text: str, max_tokens: int) -> tuple[float, Usage, str]:
        """Joules, usage and energy method of one greedy generation."""
        sampling = Sampling(temperature=0.0, max_tokens=max_tokens)
        request = (
            GenerationRequest(sampling, messages=(Message("user", text),))
            if self.chat
            else GenerationRequest(sampling, prompt=text)
        )
        slot = self.accountant.slot()
        request = dataclasses.replace(request, on_compute=slot.set_active)
        usage: Usage | None = None
        async for chunk in self.engine.generate(request):
            usage = chunk.usage or usage
        energy = local_energy(self.accountant, slot, self.constants)
        assert usage is not None and energy.energy_j is not None
        return energy.energy_j, usage, energy.method


async def _prefill(
    probe: _Probe, prompt_tokens: int, repeats: int, progress: Progress | None
) -> tuple[list[float], str]:
    """Joules per input token of ``repeats`` long prompts answered with one token."""
    words = max(1, prompt_tokens * 3 // 4 // len(PREFILL_TEXT.split()))
    long_prompt = PREFILL_TEXT * words
    per_in: list[float] = []
    method = "estimated"
    for i in range(repeats):
        # a different prefix each time, so llama.cpp's prompt cache cannot skip work
        j, usage, method = await probe.run(f"{i} {long_prompt}", 1)
        per_in.append(j / usage.prompt_tokens)
        if progress:
            progress(f"prefill {i + 1}/{repeats}: {usage.prompt_tokens} tokens, {j:.2f} J")
    return per_in, method


async def _decode(
    probe: _Probe, j_in: float, decode_tokens: int, repeats: int, progress: Progress | None
) -> tuple[list[float], str]:
    """Joules per output token of long answers, their prompt's prefill share taken off."""
    per_out: list[float] = []
    method = "estimated"
    for i in range(repeats * 3):
        if len(per_out) == repeats:
            break
        keeper = STORY_NAMES[i % len(STORY_NAMES)]
        text = f"Write a long story about a lighthouse keeper named {keeper}."
        j, usage, method = await probe.run(text, decode_tokens)
        if usage.completion_tokens < decode_tokens // 4:
            continue  # too short an answer to say much about decoding
        per_out.append(max(0.0, j - usage.prompt_tokens * j_in) / usage.completion_tokens)
        if progress:
            progress(
                f"decode {len(per_out)}/{repeats}: {usage.completion_tokens} tokens, {j:.2f} J"
            )
    return per_out, method


@contextlib.asynccontextmanager
async def _opened(
    settings: Settings,
    spec: ModelSpec,
    accountant: Accountant,
    constants: EstimateConstants,
    pid: int | None,
) -> AsyncIterator[_Probe]:
    """The model ready to be measured: loaded in-process, or its server reached over HTTP."""
    if spec.is_remote:
        if pid is None:
            raise ConfigError(
                f"{spec.name} is a remote model: profile it on the machine that serves it, "
                "naming its server's process with --pid (or set profiles."
                f"{spec.name!r} in the config)"
            )
        remote = RemoteEngine(spec, settings)
        try:
            yield UpstreamProbe(remote, pid, accountant, constants, spec.chat)
        finally:
            await remote.aclose()
        return
    if pid is not None:
        raise ConfigError(f"--pid is for a remote model's server; {spec.name} runs in-process")
    catalog = Catalog(settings)
    path = catalog.file_path(spec)
    if path is None or not catalog.is_installed(spec):
        raise UnknownModelError(spec.name, f"{spec.name} is not an installed local model")
    engine = LlamaEngine(spec, path, settings)
    engine.load()
    try:
        yield _LocalProbe(engine, accountant, constants, spec.chat)
    finally:
        engine.unload()


def _source(
    settings: Settings, spec: ModelSpec, probe: _Probe, method: str, constants: EstimateConstants
) -> str:
    """Where a profile's figures come from, for its receipts."""
    cpu = platform.processor() or platform.machine()
    try:
        from smallfirst.metering.power import read_cpu_model

        cpu = read_cpu_model() or cpu
    except OSError:
        pass
    day = time.strftime("%Y-%m-%d")
    if isinstance(probe, UpstreamProbe):
        assert spec.remote is not None
        return (
            f"smallfirst models profile over HTTP against {spec.remote.base_url} on {cpu}, "
            f"{day}; {probe.scope()}"
        )
    return (
        f"smallfirst models profile on {cpu}, {settings.threads} threads, {day}; "
        f"{'counters' if method == 'measured' else constants.source}"
    )


def profile_model(
    settings: Settings,
    name: str,
    accountant: Accountant,
    constants: EstimateConstants,
    repeats: int = 3,
    prefill_tokens: int = 512,
    decode_tokens: int = 128,
    progress: Progress | None = None,
    pid: int | None = None,
) -> Profile:
    """``name``'s joules per input and output token; ``pid``: a remote model's server
    process on this machine (required for a remote model, refused for a local one)."""
    spec = Catalog(settings).get(name)

    async def measure() -> tuple[list[float], list[float], str, str]:
        async with _opened(settings, spec, accountant, constants, pid) as probe:
            await probe.run("Hello", 4)  # warm-up
            per_in, method = await _prefill(probe, prefill_tokens, repeats, progress)
            j_in = statistics.median(per_in)
            per_out, method = await _decode(probe, j_in, decode_tokens, repeats, progress)
            if not per_out:
                raise EvaluationError(
                    f"{name}: the model never produced a long enough answer to profile"
                )
            return per_in, per_out, method, _source(settings, spec, probe, method, constants)

    per_in, per_out, method, source = asyncio.run(measure())
    return Profile(
        model=name,
        j_per_input_token=statistics.median(per_in),
        j_per_output_token=statistics.median(per_out),
        method=method,
        source=source,
    )
