"""Metering as the server uses it: one object built from the settings at startup.

It chooses the energy method once (hardware counters when readable, else the CPU-time
estimate with its constants), resolves the grid intensity, prices, profiles and the
reference model, and then turns each finished request into a :class:`Receipt`.

Building it reads /proc, /sys and CodeCarbon's data files once; nothing happens per request
but arithmetic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from smallfirst.catalog import Catalog, ModelSpec, Remote
from smallfirst.errors import ConfigError, UnknownModelError
from smallfirst.metering.meter import (
    Accountant,
    Energy,
    EstimateConstants,
    Slot,
    local_energy,
)
from smallfirst.metering.pricing import REFERENCE_PRICES, Price, Profile, ProfileBook
from smallfirst.metering.receipts import Overhead, Pricer, Receipt
from smallfirst.settings import Settings

log = logging.getLogger(__name__)

# The grid intensity (g/kWh) and its source of the hour a deferred batch line runs in: set
# by the batch runner around that line only (a ContextVar reaches the line's own task and
# the tasks it starts, nothing else), read when its receipt is made.
GRID_HOUR: ContextVar[tuple[float, str] | None] = ContextVar("grid_hour", default=None)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Facts about a finished request, as the server saw them."""

    receipt_id: str
    created_at: float
    endpoint: str
    stream: bool
    status: str
    tokens: tuple[int, int] | None
    duration_s: float
    ttft_s: float | None
    policy: str | None = None
    predicted_quality: float | None = None
    route: str | None = None  # JSON
    key_id: str | None = None  # the API key that asked, if any
    key_name: str | None = None
    cache: str | None = None  # "miss" when the response cache looked and will keep it


def _price_only_spec(name: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        tier="remote",
        parameters="unknown",
        quantization="unknown",
        context_length=0,
        license="proprietary",
        source="reference price only",
        remote=Remote(base_url="", model_id=name),
    )


class Metering:
    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        from smallfirst.metering.carbon import grid_intensity
        from smallfirst.metering.counters import nvml_counters, rapl_counters
        from smallfirst.metering.power import cpu_power

        counters = [*rapl_counters(), *nvml_counters()] if settings.hardware_counters else []
        self.accountant = Accountant(counters)
        power = cpu_power(watts_per_thread=settings.watts_per_thread)
        self.constants = EstimateConstants(
            watts_per_thread=power.watts_per_thread,
            ram_w=power.ram_w,
            source=f"{power.source}; RAM: {power.ram_source}",
        )
        grid = grid_intensity(settings.country)
        self.profiles = ProfileBook(
            settings.data_dir / "profiles.json",
            {
                name: Profile(
                    name, p.j_per_input_token, p.j_per_output_token, "configured", p.source
                )
                for name, p in settings.profiles.items()
            },
        )
        prices = dict(REFERENCE_PRICES)
        prices.update(
            {
                n: Price(p.input_per_mtok_usd, p.output_per_mtok_usd, p.as_of, "settings")
                for n, p in settings.prices.items()
            }
        )
        reference = None
        if settings.reference_model:
            try:
                reference = catalog.get(settings.reference_model)
            except UnknownModelError:
                if settings.reference_model not in prices:
                    raise ConfigError(
                        f"reference_model {settings.reference_model!r} is neither a catalog "
                        "model nor a priced hosted model"
                    ) from None
                reference = _price_only_spec(settings.reference_model)
        self.pricer = Pricer(
            grid_g_per_kwh=grid.g_per_kwh,
            carbon_source=grid.source,
            pue=settings.pue,
            electricity_usd_per_kwh=settings.electricity_usd_per_kwh,
            hardware_usd_per_hour=settings.hardware_usd_per_hour,
            prices=prices,
            reference=reference,
            reference_profile=self.profiles.get(reference.name) if reference else None,
            profile_of=self.profiles.get,
        )
        log.info(
            "metering: energy %s; grid %s g/kWh (%s)",
            f"measured by {', '.join(c.name for c in counters)}"
            if counters
            else f"estimated ({self.constants.watts_per_thread:g} W/thread)",
            grid.g_per_kwh,
            grid.source,
        )

    def slot(self, spec: ModelSpec) -> Slot | None:
        """An accounting slot for an in-process generation (None for remote models)."""
        return None if spec.is_remote else self.accountant.slot()

    def energy(self, spec: ModelSpec, slot: Slot | None, tokens: tuple[int, int] | None) -> Energy:
        if slot is not None:
            return local_energy(self.accountant, slot, self.constants)
        profile = self.profiles.get(spec.name)
        if profile is None:
            return Energy(
                None,
                "unknown",
                note=(
                    "remote model: the upstream reports no energy and no profile is configured "
                    f"(set profiles.{spec.name!r} in the config or run `smallfirst models "
                    "profile`)"
                ),
            )
        if tokens is None:
            return Energy(None, "unknown", note="token counts unknown")
        return Energy(
            profile.energy_j(*tokens),
            "profile",
            scope="per-token profile",
            source=f"{profile.j_per_input_token:g} J/input token, {profile.j_per_output_token:g}"
            f" J/output token ({profile.method}: {profile.source})",
        )

    def receipt(
        self, spec: ModelSpec, slot: Slot | None, outcome: Outcome, energy: Energy | None = None
    ) -> Receipt:
        """The receipt of a finished request; ``energy`` when the caller already summed it
        (a cascade's attempts), else the slot's or the profile's. Inside :data:`GRID_HOUR`
        (a batch line) its carbon is the hour's grid intensity, not the annual average."""
        pricer = self.pricer
        hour = GRID_HOUR.get()
        if hour is not None:
            pricer = dataclasses.replace(pricer, grid_g_per_kwh=hour[0], carbon_source=hour[1])
        return pricer.make(
            spec=spec,
            energy=energy if energy is not None else self.energy(spec, slot, outcome.tokens),
            tokens=outcome.tokens,
            duration_s=outcome.duration_s,
            like_for_like=energy is None,
            id=outcome.receipt_id,
            created_at=outcome.created_at,
            endpoint=outcome.endpoint,
            stream=outcome.stream,
            status=outcome.status,
            ttft_s=outcome.ttft_s,
            policy=outcome.policy,
            predicted_quality=outcome.predicted_quality,
            route=outcome.route,
            key_id=outcome.key_id,
            key_name=outcome.key_name,
            cache=outcome.cache,
        )

    @contextlib.contextmanager
    def overhead(self, kind: str, model: str, record: Callable[[Overhead], None]) -> Iterator[None]:
        """Meter the work inside as overhead (billed to no request), in its own slot, and
        hand its row to ``record`` when it ends, whether it worked or not."""
        slot = self.accountant.slot()
        created_at, started = time.time(), time.perf_counter()
        slot.set_active(True)
        try:
            yield
        finally:
            energy = local_energy(self.accountant, slot, self.constants)
            duration_s = time.perf_counter() - started
            record(self.pricer.overhead(kind, model, energy, duration_s, created_at))

    def lookup_slot(self) -> Slot:
        """An accounting slot for work that runs no model (a cache lookup): metered the
        same way as a generation, by the process's CPU time or the counters."""
        return self.accountant.slot()

    def hit_receipt(self, slot: Slot, outcome: Outcome, original: Receipt) -> Receipt:
        """The receipt of a request answered from the response cache with ``original``'s
        answer; ``slot`` metered the lookup."""
        energy = dataclasses.replace(
            local_energy(self.accountant, slot, self.constants),
            note="a cache lookup: no model ran",
        )
        return self.pricer.hit(
            original,
            energy,
            outcome.duration_s,
            id=outcome.receipt_id,
            created_at=outcome.created_at,
            endpoint=outcome.endpoint,
            stream=outcome.stream,
            status=outcome.status,
            key_id=outcome.key_id,  # who asked this time, not who asked first
            key_name=outcome.key_name,
        )
