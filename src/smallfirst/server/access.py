"""One request's budget: its worst case, reserved before a model runs, settled by its receipt.

The worst case of a request on a model is its prompt's token bound plus ``max_tokens``
(the model's context when not given), priced the way the receipt will be: dollars from
the model's price, or from its energy at the electricity price for a local model; Wh from
its per-token energy profile; gCO2 from that energy at the grid's intensity. The prompt
bound is its UTF-8 bytes plus a few tokens per message and a default system prompt's worth
for the chat template: a byte-level tokenizer never makes more tokens than bytes, so the
bound holds without loading the model.

A local model's receipt measures its energy (or estimates it from CPU time and RAM power
over the request's duration) rather than reading its profile, so its worst case is the
profile times ``access_energy_margin``: an estimate, not a bound. On a busy machine, or on
the request that loads the model, the receipt can exceed it; the key is then charged the
receipt in full (its spending stays the sum of its receipts, a warning is logged) and may
end past its budget by that excess. Hard energy budgets on local models want a
conservative configured profile (``[profiles.NAME]``) or a larger margin.

:class:`Access` reserves it (:mod:`smallfirst.store.budgets`) and hands back a
:class:`Reservation`, which the request's receipt settles (its cost, Wh and CO2, so that
what a key spent is always the sum of its receipts; a figure the receipt does not know,
such as a priced remote model's cost when a stream was cut before its usage, counts 0)
and which the auth
middleware releases when the response is over, whatever happened (a failure before any
receipt, a client gone). A budget that cannot be priced (a model with no price, no
profile) refuses the request rather than letting it through unmetered.

It does not authenticate (:mod:`.auth`) or choose models; it knows budgets only through
the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import Any

from smallfirst.catalog import Catalog, ModelSpec
from smallfirst.engines.base import GenerationRequest
from smallfirst.errors import ModelNotAllowedError, QuotaExceededError
from smallfirst.metering.receipts import Receipt
from smallfirst.metering.service import Metering
from smallfirst.server.choosing import Choice, Exclude
from smallfirst.server.offload import Offload
from smallfirst.server.ratelimit import Entry, RateLimiter, SharedRateLimiter, estimate_tokens
from smallfirst.server.serving import Record
from smallfirst.settings import Settings
from smallfirst.store.budgets import UNITS, Amounts, BudgetBook
from smallfirst.store.keys import ApiKey, KeyStore

__all__ = ["TEMPLATE_TOKENS", "Access", "Reservation", "prompt_bound", "reclaim_leases"]

log = logging.getLogger(__name__)

# chat-template tokens around each message (role markers, separators: the ladder's
# templates use 3 to 5), and once per request for the template's own default system
# prompt (SmolLM2's and Qwen2.5's are about 20 tokens: "Say hello." becomes 33 tokens)
TEMPLATE_TOKENS = 8
TEMPLATE_REQUEST_TOKENS = 64
J_PER_WH = 3600.0


def prompt_bound(gen: GenerationRequest) -> int:
    """At least as many tokens as the prompt can make, without a tokenizer."""
    text = len(gen.prompt_text().encode())
    if gen.messages is not None:
        return text + TEMPLATE_TOKENS * len(gen.messages) + TEMPLATE_REQUEST_TOKENS
    return text + TEMPLATE_TOKENS


def _add(a: Amounts, b: Amounts) -> Amounts:
    def plus(x: float | None, y: float | None) -> float | None:
        return None if x is None or y is None else x + y

    return Amounts(plus(a.usd, b.usd), plus(a.wh, b.wh), plus(a.co2_g, b.co2_g))


def fits_within(worst: Amounts, room: Amounts) -> bool:
    """Whether every known figure of ``worst`` is at most ``room``'s (unknown room: no)."""
    for u, _ in UNITS:
        w, r = worst.get(u), room.get(u)
        if r is not None and (w is None or w > r):
            return False
    return True


class Reservation:
    """One request's reserved worst case; settled once by its receipt, else released."""

    def __init__(self, access: Access, key: ApiKey, worst: Amounts, reservation: int) -> None:
        self.access = access
        self.key = key
        self.worst = worst
        self.id = reservation
        self._lock = threading.Lock()
        self._state = "open"  # "settled" | "released"

    def settle(self, receipt: Receipt) -> None:
        """Charge the receipt's figures (one it does not know counts 0, as in its sums)."""
        actual = Amounts(
            receipt.cost_usd or 0.0,
            (receipt.energy_j or 0.0) / J_PER_WH,
            receipt.co2_g or 0.0,
        )
        with self._lock:
            if self._state == "settled":
                return
            self._state = "settled"
        # after a release (the response ended before its receipt) the store has nothing
        # left to give back for it, and charges the receipt all the same
        self.access.keys.budgets.settle(self.key, self.id, actual)
        if not fits_within(actual, self.worst):
            log.warning(
                "request %s on key %s spent more than its reserved worst case", receipt.id,
                self.key.name,
            )  # fmt: skip

    @property
    def is_open(self) -> bool:
        """Neither settled nor released yet."""
        return self._state == "open"

    def release(self) -> None:
        """Give the whole reservation back (nothing spent, or no receipt came); blocking,
        as :meth:`settle` is (the server calls both through its :class:`Offload`)."""
        with self._lock:
            if self._state != "open":
                return
            self._state = "released"
        self.access.keys.budgets.settle(self.key, self.id, Amounts(0.0, 0.0, 0.0))


class Access:
    """Worst cases and reservations for one gateway."""

    def __init__(
        self,
        keys: KeyStore,
        catalog: Catalog,
        metering: Metering | None,
        settings: Settings,
        offload: Offload,
    ) -> None:
        self.keys = keys
        self.offload = offload
        self.catalog = catalog
        self.metering = metering
        self.settings = settings
        # replicas on one PostgreSQL share each key's window; one SQLite host counts in memory
        self.limiter: RateLimiter | SharedRateLimiter = (
            SharedRateLimiter(keys.rates) if keys.dialect == "postgresql" else RateLimiter()
        )

    def worst_case(self, model: str, gen: GenerationRequest) -> Amounts:
        """The most one generation of ``gen`` on ``model`` can cost, use and emit."""
        if self.metering is None or model not in self.catalog:
            return Amounts()
        spec = self.catalog.get(model)
        prompt = prompt_bound(gen)
        completion = gen.sampling.max_tokens
        if completion is None:
            completion = self._context(spec)
        completion *= gen.n  # every choice may run to the limit
        profile = self.metering.profiles.get(spec.name)
        energy_j = None
        if profile is not None:
            margin = 1.0 if spec.is_remote else self.settings.access_energy_margin
            energy_j = profile.energy_j(prompt, completion) * margin
        pricer = self.metering.pricer
        usd = pricer.cost(spec, energy_j, (prompt, completion), 0.0)[0]
        return Amounts(
            usd, None if energy_j is None else energy_j / J_PER_WH, pricer.co2_g(energy_j)
        )

    def _context(self, spec: ModelSpec) -> int:
        return (
            spec.context_length if spec.is_remote else min(spec.context_length, self.settings.n_ctx)
        )

    def worst_of(self, models: Sequence[str], gen: GenerationRequest) -> Amounts:
        """The worst case of generations on each of ``models`` in turn (a cascade's ladder)."""
        total = Amounts(0.0, 0.0, 0.0)
        for model in models:
            total = _add(total, self.worst_case(model, gen))
        return total

    def reserve(self, key: ApiKey, models: Sequence[str], gen: GenerationRequest) -> Reservation:
        """Reserve the worst case of ``models`` (one each) on ``key``'s budgets, or raise
        :class:`QuotaExceededError`."""
        worst = self.worst_of(models, gen)
        for u, label in UNITS:
            if key.budget.get(u) is not None and worst.get(u) is None:
                raise QuotaExceededError(
                    f"Key {key.name} has a {label} budget, but a request on "
                    f"{' then '.join(models)} cannot be priced in {label} (no price or "
                    "energy profile, or receipts are off), so it is refused."
                )
        ttl_s = self.settings.access_reservation_ttl_s
        return Reservation(self, key, worst, self.keys.budgets.reserve(key, worst, ttl_s))

    @staticmethod
    def has_budget(key: ApiKey | None) -> bool:
        return key is not None and any(key.budget.get(u) is not None for u, _ in UNITS)

    def excluder(self, key: ApiKey, gen: GenerationRequest) -> Exclude | None:
        """Why ``auto`` may not pick a model for ``key``: outside its models, or its worst
        case over what is left of a budget (None: a key with neither)."""
        budgeted = self.has_budget(key)
        if not budgeted and not key.models:
            return None
        budgets = BudgetBook.report(key)
        room = Amounts(*(budgets[u]["left"] for u, _ in UNITS))

        def exclude(model: str) -> str | None:
            if not key.allows(model):
                return "not among the key's models"
            if budgeted and not fits_within(self.worst_case(model, gen), room):
                return "budget: its worst case does not fit what is left"
            return None

        return exclude

    async def admit(
        self, state: Any, key: ApiKey, asked: str, choice: Choice, gen: GenerationRequest,
        record: Record,
    ) -> tuple[Choice, Record]:  # fmt: skip
        """Check ``key`` may use the choice, count it against its rate limits, reserve its
        worst case; the choice to serve (the key on it, fallbacks it may afford) and the
        record that settles the reservation. Raises the access error that refuses it.

        The rate window and the reservation are read and written off the event loop, in one
        worker-thread call (an in-memory window alone, with nothing to reserve, is counted
        here)."""
        # a named model is the choice's; for auto, the one the router picked among the key's
        if not key.allows(choice.model):
            raise ModelNotAllowedError(
                f"The API key {key.name} may not use the model {choice.model!r}"
                + (f" (chosen for {asked!r})." if asked != choice.model else ".")
            )
        tokens = estimate_tokens(len(gen.prompt_text()), gen.sampling.max_tokens)
        fallbacks = tuple(f for f in choice.fallbacks if key.allows(f))
        choice = dataclasses.replace(choice, caller=(key.id, key.name), fallbacks=fallbacks)
        ladder: list[str] | None = None
        # (an unknown model is refused with 404 before anything runs: nothing to reserve)
        if self.has_budget(key) and choice.model in self.catalog:
            ladder = [choice.model]
            if choice.cascade is not None:
                names = [c.name for c in choice.cascade[1]]
                ladder = names[names.index(choice.model) :] if choice.model in names else ladder
        if ladder is None and not self.limiter.blocking:  # nothing here waits on the store
            entry, reservation = self._admit(key, tokens, None, gen)
        else:
            entry, reservation = await self.offload(self._admit, key, tokens, ladder, gen)
        state.rate_entry = entry  # its window gives the response's rate-limit headers
        if reservation is None:
            return choice, self._recorder(record, None, entry)
        state.reservation = reservation
        affordable = tuple(
            f for f in fallbacks if fits_within(self.worst_case(f, gen), reservation.worst)
        )
        return dataclasses.replace(choice, fallbacks=affordable), self._recorder(
            record, reservation, entry
        )

    def _admit(
        self, key: ApiKey, tokens: int, ladder: list[str] | None, gen: GenerationRequest
    ) -> tuple[Entry | None, Reservation | None]:
        """Blocking: count the request in ``key``'s rate window, then reserve the worst
        case of ``ladder`` (None: nothing to reserve)."""
        entry = self.limiter.admit(key, tokens)
        return entry, None if ladder is None else self.reserve(key, ladder, gen)

    def _recorder(
        self, record: Record, reservation: Reservation | None, entry: Entry | None
    ) -> Record:
        if reservation is None and entry is None:
            return record

        def charge(receipt: Receipt) -> None:  # blocking: on a worker thread
            if reservation is not None:
                reservation.settle(receipt)
            tokens = (receipt.prompt_tokens or 0) + (receipt.completion_tokens or 0)
            self.limiter.correct(entry, tokens)

        async def settle(receipt: Receipt) -> None:
            try:
                await record(receipt)
            finally:
                if reservation is None and not self.limiter.blocking:
                    charge(receipt)  # an in-memory window only
                else:
                    await self.offload(charge, receipt)

        return settle


def reclaim_every_s(ttl_s: float) -> float:
    """How often a gateway looks for expired leases: a quarter of one, within [1 s, 60 s]."""
    return min(max(ttl_s / 4, 1.0), 60.0)


async def reclaim_leases(keys: KeyStore, ttl_s: float) -> None:
    """Give back, every :func:`reclaim_every_s`, the reservations whose lease expired: ones a
    gateway (this one before a restart, or a replica that died) never settled. A key's next
    reservation also does it for that key; this keeps what ``keys show`` reports true in the
    meantime. Runs until cancelled; a failure (the database away) is logged and retried."""
    while True:
        await asyncio.sleep(reclaim_every_s(ttl_s))
        try:
            # inside the try: with no key yet, any() asks the database every time, and a
            # database that is down must not end this task for good
            if not await asyncio.to_thread(keys.any):
                continue
            count = await asyncio.to_thread(keys.budgets.reclaim)
        except Exception as exc:
            log.warning("could not reclaim expired budget reservations: %s", exc)
            continue
        if count:
            log.info("gave back expired budget reservations of %d key(s)", count)
