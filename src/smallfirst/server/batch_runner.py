"""The batch runner: a background task of the gateway that answers batch lines and closes
batches.

Every tick (``batch_tick_s``, or at once when a batch is created, cancelled or a line
ends) it walks the unfinished batches in the store, in a worker thread (a slow or lost
database never stalls the event loop that serves live requests):

* ``validating`` → ``in_progress``, with the batch's first plan (:mod:`.batch_plans`: the
  hours its lines may run in, or at once, and why);
* ``in_progress``: plans again for the work left (a changed forecast revises the plan),
  claims lines (:meth:`BatchStore.claim`, leased ``batch_line_lease_s``) while the plan
  says now and there is spare capacity, and answers each through the
  serving step (:mod:`.batch_lines`); once no line is left, ``finalizing`` → writes the
  output and error files → ``completed``. Past ``expires_at`` the lines not started fail
  with ``batch_expired`` and the batch ends ``expired``;
* ``cancelling``: starts nothing; once its running lines are done, writes the files with
  the lines finished so far → ``cancelled``.

Interactive traffic first: at most ``batch_max_in_flight`` lines run at once (default
``parallel - 1``, so one slot of the batched engine is always free for a live request),
no new line starts while any live request waits in a model's admission queue, and the
lines' generations are background work (:data:`~smallfirst.engines.base.BACKGROUND`): the
batched engine pauses them while a live request reads its prompt. A line
that meets overload, shutdown or its key's rate limit goes back to pending, to run later.

Each tick also sweeps out up to ``FILES_SWEPT_PER_TICK`` expired files (their rows, then
their bytes), sparing the input of a batch not yet ended; an expired file is already gone
to callers before it is swept (:mod:`smallfirst.store.files`). A gateway with the runner
off sweeps nothing; another gateway on the same store does.

Durable: lines live in the store, so a restart (``kill -9`` included) resumes; a runner
renews the leases of the lines it runs every tick, so a line is claimed again only when
the gateway holding it stopped ticking (died) for a whole lease; a finished line
is never run again (:mod:`smallfirst.store.batches`). Output files get fixed ids (from the
batch's), so finishing twice writes the same file. When the gateway stops, the lines it
holds are put back at once.

This module does not validate uploads or shape HTTP answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from smallfirst.engines.base import BACKGROUND
from smallfirst.engines.pool import EnginePool
from smallfirst.errors import InvalidKeyError, SmallfirstError
from smallfirst.metering.service import GRID_HOUR
from smallfirst.server.batch_lines import Answered, Deferred, LineServer, error_line, used
from smallfirst.server.batch_plans import BusyTime, Planner, RunPlan
from smallfirst.server.errors import describe
from smallfirst.settings import Settings
from smallfirst.store.batches import BatchRecord, BatchStore, Claimed
from smallfirst.store.files import FileStore
from smallfirst.store.keys import KeyStore

__all__ = ["BatchRunner", "stopped"]

log = logging.getLogger(__name__)

DEFER_PAUSE_S = 1.0  # after a line was deferred (overload, rate limit), wait this long
FILES_SWEPT_PER_TICK = 100  # expired files removed per tick: a tick's work stays bounded


class BatchRunner:
    """Runs the store's batches in this gateway, beside its live traffic."""

    def __init__(
        self,
        settings: Settings,
        batches: BatchStore,
        files: FileStore,
        keys: KeyStore,
        pool: EnginePool,
        lines: LineServer,
        planner: Planner,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.batches = batches
        self.files = files
        self.keys = keys
        self.pool = pool
        self.lines = lines
        self.planner = planner
        self.clock = clock
        self.claim = "runner_" + secrets.token_hex(8)  # this gateway's claims
        self.max_in_flight = settings.batch_max_in_flight or max(settings.parallel - 1, 1)
        self._running: dict[asyncio.Task[None], Claimed] = {}
        self._wake = asyncio.Event()
        self._paused_until = 0.0
        self.busy = BusyTime()  # each batch's measured pace here, for its plan

    def wake(self) -> None:
        """Look for work now (a batch was created or cancelled)."""
        self._wake.set()

    async def run(self) -> None:
        """Step until cancelled; then end the lines in flight and put them back to pending."""
        try:
            while True:
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.batch_tick_s)
                self._wake.clear()
        finally:
            for task in list(self._running):
                task.cancel()
            for task in list(self._running):
                with contextlib.suppress(BaseException):
                    await task
            try:
                await asyncio.to_thread(self.batches.release, self.claim)
            except Exception as exc:  # the database away: the leases run out instead
                log.warning("could not put this runner's batch lines back: %s", exc)

    async def step(self) -> None:
        """One tick, its database work in a thread (a slow or lost database must not stall
        the event loop live requests are served on), then the lines it claimed started."""
        busy = {line.batch_id for line in self._running.values()}
        try:
            starts = await asyncio.to_thread(self.tick, len(self._running), busy)
        except Exception:
            log.exception("the batch runner's tick failed; trying again")
            return
        for batch, line in starts:
            task = asyncio.get_running_loop().create_task(self._run(batch, line))
            self._running[task] = line
            task.add_done_callback(self._done)

    def tick(self, in_flight: int, busy: set[str]) -> list[tuple[BatchRecord, Claimed]]:
        """One pass over the unfinished batches (in a worker thread): statuses moved, files
        written, and the lines claimed for the ``in_flight`` running here now to start;
        ``busy``: the batches those belong to."""
        if in_flight:  # alive: the lines this runner holds stay its own
            self.batches.renew(self.claim, self.settings.batch_line_lease_s, self.clock())
        self._sweep()
        starts: list[tuple[BatchRecord, Claimed]] = []
        for batch in self.batches.active():
            now = self.clock()
            if batch.status == "validating":
                self._plan(batch, now)  # the first plan: its figures are "at submission"
                if not self.batches.move(batch.id, "in_progress", since=("validating",), now=now):
                    continue
                batch = self.batches.get(batch.id, None)
            if batch.status == "in_progress":
                room = self.max_in_flight - in_flight - len(starts)
                starts += self._progress(batch, now, room, busy)
            elif batch.status == "cancelling":
                self._close_when_idle(batch, "cancelled", ("cancelling",), busy)
            elif batch.status == "finalizing":  # a gateway died while finishing it
                self._finish(batch, "completed", since=("finalizing",))
        return starts

    def _sweep(self) -> None:
        """Remove a bounded number of expired files: rows first, so a file whose bytes are
        being removed is already unknown."""
        for file_id in self.batches.sweep_files(self.clock(), FILES_SWEPT_PER_TICK):
            self.files.discard(file_id)

    def _progress(
        self, batch: BatchRecord, now: float, room: int, busy: set[str]
    ) -> list[tuple[BatchRecord, Claimed]]:
        if now >= batch.expires_at:
            self.batches.fail_unfinished(
                batch.id,
                lambda cid: error_line(
                    cid, "batch_expired", "This request could not be executed before the "
                    "completion window expired."
                ),
                now=now,
            )  # fmt: skip
            self._close_when_idle(batch, "expired", ("in_progress",), busy)
            return []
        starts = []
        if self._plan(batch, now).runs_at(now):
            starts = [(batch, line) for line in self._claim(batch, now, room)]
        counts = self.batches.counts(batch.id, now)
        idle = counts.pending == 0 and counts.running == 0
        if idle and self.batches.move(batch.id, "finalizing", since=("in_progress",), now=now):
            self._finish(self.batches.get(batch.id, None), "completed", since=("finalizing",))
        return starts

    def _plan(self, batch: BatchRecord, now: float) -> RunPlan:
        """The batch's plan for the work it has left, made again every tick (a changed
        forecast revises it), kept in its row when it changed."""
        counts = self.batches.counts(batch.id, now)
        run, public = self.planner.plan(batch, counts, now, self.busy.measured(batch.id, now))
        if public != batch.plan:
            self.batches.set_plan(batch.id, public)
        return run

    def _claim(self, batch: BatchRecord, now: float, room: int) -> list[Claimed]:
        """As many lines as there is spare capacity for."""
        if room <= 0 or now < self._paused_until or self.pool.waiting() > 0:
            return []  # interactive traffic first
        return self.batches.claim(batch.id, room, self.claim, self.settings.batch_line_lease_s, now)

    def _done(self, task: asyncio.Task[None]) -> None:
        line = self._running.pop(task, None)
        if not task.cancelled() and task.exception() is not None and line is not None:
            # the database away when its answer was to be kept: the lease runs out and the
            # line runs again (its answer here is lost, never written twice)
            log.error("batch %s line %d: %s", line.batch_id, line.line, task.exception())
        self._wake.set()

    async def _run(self, batch: BatchRecord, line: Claimed) -> None:
        self.busy.start(batch.id, self.clock())
        kept = False
        try:
            kept = await self._run_line(batch, line)
        finally:
            self.busy.stop(batch.id, self.clock(), finished=kept)

    async def _run_line(self, batch: BatchRecord, line: Claimed) -> bool:
        """Answer one line and keep its answer; whether it was kept."""
        BACKGROUND.set(True)  # this task's generations yield to live prompts (engines)
        # this task's receipt is priced at the grid intensity of the hour it runs in
        hour = await asyncio.to_thread(self.planner.hour, self.clock())
        if hour is not None:
            GRID_HOUR.set(hour)
        try:
            answered = await self._answer(batch, line)
        except Deferred as exc:
            log.info("batch %s line %d deferred: %s", batch.id, line.line, exc)
            self._paused_until = self.clock() + DEFER_PAUSE_S
            await asyncio.to_thread(self.batches.release, self.claim, line)
            return False
        except Exception as exc:  # its bytes unreadable, say: the line fails, once, and says why
            log.exception("batch %s line %d could not be run", batch.id, line.line)
            answered = Answered(False, error_line(line.custom_id, "server_error", str(exc)), None)
        kept = await asyncio.to_thread(
            self.batches.finish,
            line,
            ok=answered.ok,
            output=answered.line,
            receipt=answered.receipt,
            tokens=used(answered.line),
            now=self.clock(),
        )
        if not kept:
            log.warning("batch %s line %d: lease lost, answer dropped", batch.id, line.line)
        return bool(kept)

    async def _answer(self, batch: BatchRecord, line: Claimed) -> Answered:
        raw = await asyncio.to_thread(
            self.files.read_span, batch.input_file_id, line.offset, line.length
        )
        body = json.loads(raw)["body"]
        try:
            key = None if batch.key_id is None else await asyncio.to_thread(self._key, batch.key_id)
        except SmallfirstError as exc:
            wire = describe(exc)
            assert wire is not None
            return Answered(False, error_line(line.custom_id, wire.code or "", wire.message), None)
        return await self.lines.answer(batch.endpoint, line.custom_id, body, key)

    def _key(self, key_id: str) -> object:
        key = self.keys.get(key_id)
        if key.revoked_at is not None or (
            key.expires_at is not None and key.expires_at <= self.clock()
        ):
            raise InvalidKeyError(f"The API key ({key.name}) of this batch is no longer valid.")
        return key

    def _close_when_idle(
        self, batch: BatchRecord, to: str, since: tuple[str, ...], busy: set[str]
    ) -> None:
        """Finish ``batch`` as ``to`` once none of its lines is running here (``busy``) or
        elsewhere."""
        if batch.id not in busy and self.batches.counts(batch.id, self.clock()).running == 0:
            self._finish(batch, to, since=since)

    def _finish(self, batch: BatchRecord, to: str, since: tuple[str, ...]) -> None:
        """Write the output and error files (fixed ids: doing it twice is harmless) and move
        the batch to ``to``."""
        files: dict[str, Any] = {"output_file_id": None, "error_file_id": None}
        base = batch.id.removeprefix("batch_")
        for column, ok, name in (
            ("output_file_id", True, "output"),
            ("error_file_id", False, "error"),
        ):
            lines = self.batches.outputs(batch.id, ok=ok)
            if not lines:
                continue
            record = self.files.add(
                ("\n".join(lines) + "\n").encode(),
                filename=f"{batch.id}_{name}.jsonl",
                purpose="batch_output",
                key_id=batch.key_id,
                lines=len(lines),
                file_id=f"file-{base}{'o' if ok else 'e'}",
                now=self.clock(),
                expires_after_s=batch.output_expires_s,  # anchored at this file's creation
            )
            files[column] = record.id
        self.batches.move(batch.id, to, since=since, now=self.clock(), **files)
        self.busy.forget(batch.id)


async def stopped(task: asyncio.Task[None]) -> None:
    """Cancel the runner's task (:meth:`BatchRunner.run`) and wait until it has put its
    lines back."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
