"""The scheduler: knows every schedule, fires each due run once, records how it went.

One task waits for the earliest planned slot (or a change: a new schedule, an edited file, a
poke from a test's clock) and starts each due run. A run is first claimed in the store, so a
run fires once even with several workers, and across a restart (the claim is durable). Each
run goes to `deliver` (duragent.scheduling.delivery), is retried with backoff when the schedule
asks for it, and ends as a line of run history. A one-shot then becomes `completed`; a
recurring schedule was already planned for its next slot when the run started.

After a restart, a one-shot that came due while the server was down runs once if it is no
later than `misfire_grace`, otherwise it is recorded as `missed`; a recurring schedule runs its
latest missed slot once if it is no later than that, then plans its next slot (missed slots are
not fired in a burst).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from duragent.errors import DuragentError, ServiceUnavailable, UsageError
from duragent.scheduling.destinations import misdirected_schedules
from duragent.scheduling.spec import FINISHED, Schedule, format_time, last_slot, next_slot
from duragent.scheduling.store import Listing, RunRecord, ScheduleNotFound, ScheduleStore
from duragent.stores.base import SessionStore, utcnow

if TYPE_CHECKING:
    from duragent.processes.record import ProcessRecord

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: Seconds between looks at the schedules folder for files a person added, edited or removed.
WATCH_INTERVAL = 1.0


class DeliveryFailed(DuragentError):
    """A run could not be delivered or its task failed; `retry` says whether trying again makes
    sense, `pause` that no later slot can be delivered either (its agent is gone)."""

    def __init__(
        self, message: str, *, retry: bool = True, session_id: str | None = None, pause: bool = False
    ):
        super().__init__(message)
        self.retry = retry and not pause
        self.session_id = session_id
        self.pause = pause


class Deliver(Protocol):
    """Carries out one run (a message or a task) and returns the session it landed in."""

    async def __call__(self, schedule: Schedule, slot: datetime) -> str:
        """Deliver the run; raise DeliveryFailed when it did not happen."""


class RunPlace:
    """A run's place among `max_concurrent_runs`: given back while the run waits for a person
    (an approval its task asked for) or between retries, so such runs block no other."""

    def __init__(self, slots: asyncio.Semaphore):
        self._slots = slots
        self._held = False

    async def take(self) -> None:
        """Wait for a place (no-op when this run holds one)."""
        if not self._held:
            await self._slots.acquire()
            self._held = True

    def give_back(self) -> None:
        """Free the place for another run (no-op when none is held)."""
        if self._held:
            self._slots.release()
            self._held = False


class RunMark:
    """A run's mark in the store that it goes on (`hold_run`): every worker sharing the store
    skips the schedule's next slots until it is let go, once, whichever way the run ends."""

    def __init__(self, store: ScheduleStore, schedule_id: str):
        self._store = store
        self._schedule_id = schedule_id
        self._held = False

    async def take(self) -> bool:
        """Mark the run; False when a run of the schedule goes on already (here or elsewhere)."""
        self._held = await self._store.hold_run(self._schedule_id)
        return self._held

    async def let_go(self) -> None:
        """The run has ended (no-op when not marked or let go already)."""
        if self._held:
            self._held = False
            await self._store.release_run(self._schedule_id)


#: The place of the run being delivered, for the delivery to give back while it waits.
current_run_place: contextvars.ContextVar[RunPlace | None] = contextvars.ContextVar(
    "current_run_place", default=None
)


@dataclass(frozen=True)
class SchedulerSettings:
    """duragent.yaml's `scheduling:` section as the scheduler uses it."""

    misfire_grace: timedelta = timedelta(hours=1)
    max_concurrent_runs: int = 5
    #: Seconds between re-reads of the store (edits another worker or a person made).
    poll_interval: float = 30.0
    #: Whether a scheduled task's turn may itself create schedules (off: no runaway chains).
    tasks_may_schedule: bool = False
    #: Shortest gap between runs of a recurring schedule an agent makes with its tool.
    agent_min_interval: timedelta = timedelta(minutes=1)
    #: Active schedules an agent may have made with its tool at once.
    agent_max_active: int = 20


class Scheduler:
    """Plans and fires every schedule of one server (or one worker of a cluster)."""

    def __init__(
        self,
        store: ScheduleStore,
        deliver: Deliver,
        *,
        settings: SchedulerSettings | None = None,
        clock: Clock = utcnow,
        worker: str = "local",
        watch_folder: Path | None = None,
        sessions: SessionStore | None = None,
    ):
        self.store = store
        #: Where destination sessions are looked up, to report a schedule aimed at another
        #: agent's session when loading (None: not checked).
        self.sessions = sessions
        self._session_owners: dict[str, str] = {}
        self.deliver = deliver
        self.settings = settings or SchedulerSettings()
        self.clock = clock
        self.worker = worker
        self.watch_folder = watch_folder
        self.schedules: dict[str, Schedule] = {}
        #: The next slot of each schedule that will fire (absent: paused or finished).
        self.planned: dict[str, datetime] = {}
        self._running: set[asyncio.Task[None]] = set()
        #: Schedules with a run in progress: a recurring one's next slot is skipped until it ends.
        self._in_flight: set[str] = set()
        #: Background processes seen ending (`until_process` of a schedule made just after).
        self._ended_processes: set[str] = set()
        self._slots = asyncio.Semaphore(self.settings.max_concurrent_runs)
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._folder_signature: frozenset[tuple[str, int, int]] | None = None
        self._reloading = asyncio.Lock()
        #: Whether the store was read once: the first reading is the start after the server was down.
        self._loaded = False
        #: Whether the last reading of the store failed with the store away (logged once, not per poll).
        self._store_away = False
        #: Set after every finished run (tests and `run_now` callers wait on the history instead).
        self.run_finished = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every schedule, plan it, and start firing."""
        await self.reload()
        self._loop_task = asyncio.create_task(self._loop(), name="scheduler")
        if self.watch_folder is not None:
            # Where a person adds a schedule by hand.
            await asyncio.to_thread(self.watch_folder.mkdir, parents=True, exist_ok=True)
        self._folder_changed()

    async def stop(self) -> None:
        """Stop firing; runs in progress are cancelled (a task's turn goes on in its session)."""
        tasks = [t for t in (self._loop_task, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop_task = None
        await self.store.close()

    def poke(self) -> None:
        """Look at the clock again now (after a clock change in tests, or a new plan)."""
        self._wake.set()

    # --- what people and agents ask for ------------------------------------------------------

    async def list_schedules(
        self, *, agent: str | None = None, include_finished: bool = False
    ) -> list[Schedule]:
        """Schedules, oldest first; completed and cancelled ones only with `include_finished`."""
        await self.reload()
        return [
            s
            for s in self.schedules.values()
            if (agent is None or s.agent == agent) and (include_finished or s.status not in FINISHED)
        ]

    async def get(self, schedule_id: str) -> Schedule:
        """One schedule, read from the store (ScheduleNotFound)."""
        return await self.store.get(schedule_id)

    async def create(self, schedule: Schedule) -> Schedule:
        """Store a new schedule and plan it; a one-shot must lie in the future."""
        if schedule.at is not None and schedule.at <= self.clock():
            now = format_time(self.clock())
            raise UsageError(f"at {format_time(schedule.at)} is in the past (now {now})")
        if schedule.status == "active" and next_slot(schedule, self.clock()) is None:
            raise UsageError(f"{schedule.timing_text()} never fires")
        if schedule.until_process in self._ended_processes:
            # it ended between the caller's check and now: nothing would ever cancel this one
            raise UsageError(f"process {schedule.until_process} has ended; until_process needs a running one")
        await self.store.put(schedule, f"created ({schedule.timing_text()}, {schedule.payload_kind})")
        self.schedules[schedule.id] = schedule
        self._plan(schedule, fresh=True)
        self.poke()
        return schedule

    async def cancel(self, schedule_id: str, *, agent: str | None = None) -> Schedule:
        """Mark a schedule cancelled (its file stays, with its history); `agent` must own it if given."""

        def cancelled(current: Schedule) -> Schedule | None:
            if agent is not None and current.agent != agent:
                raise ScheduleNotFound(schedule_id)
            if current.status == "completed":
                # it has run: saying "cancelled" would tell the person it never will
                raise UsageError(f"schedule {schedule_id} has already run (completed): nothing to cancel")
            return _cancelled_unless_finished(current)

        return await self._set_status(schedule_id, cancelled, "cancelled")

    async def process_ended(self, record: ProcessRecord) -> None:
        """Cancel every schedule linked to this background process (`until_process`)."""
        self._ended_processes.add(record.handle)
        for schedule in list(self.schedules.values()):
            if schedule.until_process == record.handle and schedule.status not in FINISHED:
                summary = f"cancelled: process {record.handle} ended"
                await self._set_status(schedule.id, _cancelled_unless_finished, summary)

    async def pause(self, schedule_id: str, *, reason: str | None = None) -> Schedule:
        """Stop firing until resumed; `reason` goes into the change's history."""

        def paused(current: Schedule) -> Schedule:
            if current.status in FINISHED:
                raise UsageError(f"schedule {schedule_id} is {current.status}; it cannot be paused")
            return _with_status(current, "paused")

        return await self._set_status(schedule_id, paused, f"paused: {reason}" if reason else "paused")

    async def resume(self, schedule_id: str) -> Schedule:
        """Fire again from the next slot after now."""

        def resumed(current: Schedule) -> Schedule:
            if current.status != "paused":
                raise UsageError(f"schedule {schedule_id} is {current.status}, not paused")
            return _with_status(current, "active")

        return await self._set_status(schedule_id, resumed, "resumed")

    async def remove(self, schedule_id: str) -> None:
        """Delete a schedule and its history."""
        await self.store.delete(schedule_id)
        self.schedules.pop(schedule_id, None)
        self.planned.pop(schedule_id, None)

    async def run_now(self, schedule_id: str) -> RunRecord:
        """Run a schedule once now, whatever its status or plan; returns the run's record."""
        schedule = await self.store.get(schedule_id)
        slot = self.clock()
        # (the claim alone cannot tell: a manual run's slot is the moment it was asked for)
        if schedule.id in self._in_flight:
            raise UsageError(f"schedule {schedule_id} is being run right now")
        # a run in progress like any other: a slot that comes meanwhile is skipped, not run beside it
        self._in_flight.add(schedule.id)
        mark = RunMark(self.store, schedule.id)
        try:
            if not await mark.take():
                raise UsageError(f"schedule {schedule_id} is being run right now (on another worker)")
            if not await self.store.claim(schedule.id, slot, self.worker):
                raise UsageError(f"schedule {schedule_id} is being run right now")
            return await self._run(schedule, slot, manual=True)
        finally:
            self._in_flight.discard(schedule.id)
            await mark.let_go()

    async def runs(self, schedule_id: str, limit: int = 20) -> list[RunRecord]:
        """The newest runs of a schedule, oldest first."""
        await self.store.get(schedule_id)
        return await self.store.runs(schedule_id, limit)

    async def _set_status(
        self, schedule_id: str, change: Callable[[Schedule], Schedule | None], summary: str
    ) -> Schedule:
        """Change the status of the schedule as stored now (`change` sees it and may refuse), so
        a change another worker or a run makes meanwhile is kept; then plan it again."""
        changed = await self.store.update(schedule_id, change, summary)
        self.schedules[changed.id] = changed
        self.planned.pop(changed.id, None)
        if changed.status == "active":
            if changed.at is not None:
                # a one-shot resumed after its moment: run late (within misfire_grace) or missed,
                # as after a restart, not left active with nothing planned
                await self._plan_loaded(changed)
            else:
                self._plan(changed, fresh=True)
            self.poke()
        return self.schedules.get(changed.id, changed)

    # --- planning ----------------------------------------------------------------------------

    async def reload(self) -> Listing:
        """Read the store again: new schedules are planned, edited ones re-planned, removed ones dropped."""
        async with self._reloading:
            listing = await self.store.load_all()
            for problem in listing.problems:
                log.error("schedule not loaded: %s", problem)
            if self.sessions is not None:
                misdirected = await misdirected_schedules(
                    listing.schedules, self.store, self.sessions, self._session_owners
                )
                for problem in misdirected:
                    log.error("schedule will not run: %s", problem)
                listing = Listing(listing.schedules, [*listing.problems, *misdirected])
            seen = set()
            starting, self._loaded = not self._loaded, True
            for schedule in listing.schedules:
                seen.add(schedule.id)
                known = self.schedules.get(schedule.id)
                self.schedules[schedule.id] = schedule
                if schedule.until_process in self._ended_processes and schedule.status not in FINISHED:
                    # made (by hand, on the command line) as its process ended: nothing else would
                    # ever cancel it
                    summary = f"cancelled: process {schedule.until_process} ended"
                    await self._set_status(schedule.id, _cancelled_unless_finished, summary)
                elif known is None or _timing(known) != _timing(schedule):
                    self.planned.pop(schedule.id, None)
                    await self._plan_loaded(schedule, starting=starting)
            for gone in set(self.schedules) - seen:
                del self.schedules[gone]
                self.planned.pop(gone, None)
        self.poke()
        return listing

    def _plan(self, schedule: Schedule, *, fresh: bool, after: datetime | None = None) -> None:
        """Plan the next slot after `after` (default now) of an active schedule."""
        if schedule.status != "active":
            self.planned.pop(schedule.id, None)
            return
        now = self.clock()
        slot = next_slot(schedule, max(after or now, now) if not fresh else now)
        if slot is None:
            self.planned.pop(schedule.id, None)
        else:
            self.planned[schedule.id] = slot

    async def _plan_loaded(self, schedule: Schedule, *, starting: bool = False) -> None:
        """Plan a schedule read from the store, which may have come due while nothing ran."""
        if schedule.status != "active":
            return
        now = self.clock()
        last_runs = await self.store.runs(schedule.id, limit=1)
        last = last_runs[-1].slot if last_runs else None
        if schedule.at is None:
            slot = next_slot(schedule, max(now, last) if last else now)
            missed = last_slot(schedule, now) if starting else None
            if (
                missed is not None
                and missed > schedule.created_at
                and (last is None or missed > last)
                and now - missed <= _grace(schedule, self.settings)
            ):
                # the server was down across this slot (a restart at 02:30 would skip the
                # nightly backup for a day): run it once, late; older slots are not fired
                log.info("schedule %s: slot %s missed while down, run now", schedule.id, format_time(missed))
                slot = missed
            if slot is not None:
                self.planned[schedule.id] = slot
            return
        if schedule.at > now:
            self.planned[schedule.id] = schedule.at
        elif last is not None and last >= schedule.at:
            # It ran (or a crash interrupted its run) before: never twice.
            await self._finish_one_shot(schedule)
        elif now - schedule.at <= _grace(schedule, self.settings):
            self.planned[schedule.id] = schedule.at  # due: fires at once
        else:
            late = now - schedule.at
            log.warning("schedule %s: missed by %s (beyond misfire_grace), not run", schedule.id, late)
            await self.store.record_run(
                schedule.id, RunRecord(schedule.at, "missed", error=f"the server was down; {_ago(late)} late")
            )
            await self._finish_one_shot(schedule)

    async def _finish_one_shot(self, schedule: Schedule) -> None:
        def completed(current: Schedule) -> Schedule | None:
            # paused or cancelled meanwhile (while its run went on): it stays so
            return _with_status(current, "completed") if current.status == "active" else None

        try:
            self.schedules[schedule.id] = await self.store.update(schedule.id, completed, "completed")
        except ScheduleNotFound:
            return  # removed meanwhile (while its run went on): it stays removed

    # --- firing ------------------------------------------------------------------------------

    def _reading_failed(self, exc: Exception) -> None:
        """Log a failed reading of the store: the store away once while it lasts (a WARNING saying
        what to check), a store's own error as it is, anything else (a bug) with its traceback."""
        if isinstance(exc, ServiceUnavailable) or _store_away(exc):
            if not self._store_away:
                self._store_away = True
                log.warning(
                    "reading schedules failed: the schedule store cannot be used now (%s); schedules"
                    " wait for it, read again every %gs: check that its database is up and reachable"
                    " from this worker (or that its disk has room)",
                    f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                    self.settings.poll_interval,
                )
        elif isinstance(exc, DuragentError):
            log.error("reading schedules failed: %s", exc)
        else:
            # a bug must not stop every schedule from firing: log it, keep the loop
            log.exception("reading schedules failed", exc_info=exc)

    async def _loop(self) -> None:
        last_reload = time.monotonic()
        while True:
            if await asyncio.to_thread(self._folder_changed) or (
                time.monotonic() - last_reload >= self.settings.poll_interval
            ):
                last_reload = time.monotonic()
                try:
                    await self.reload()
                except Exception as exc:
                    self._reading_failed(exc)
                else:
                    if self._store_away:
                        self._store_away = False
                        log.info("reading schedules works again")
            now = self.clock()
            for schedule_id, slot in sorted(self.planned.items(), key=lambda item: item[1]):
                if slot <= now:
                    try:
                        self._dispatch(self.schedules[schedule_id], slot)
                    except Exception:
                        self.planned.pop(schedule_id, None)
                        log.exception("schedule %s: planning its next run failed", schedule_id)
            self._wake.clear()
            wait = self.settings.poll_interval if self.watch_folder is None else WATCH_INTERVAL
            if self.planned:
                wait = min(wait, max((min(self.planned.values()) - self.clock()).total_seconds(), 0.0))
            # Not asyncio.wait_for: on 3.11 it swallows a cancellation that arrives as the wait ends.
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=wait)
            finally:
                waiter.cancel()

    def _dispatch(self, schedule: Schedule, slot: datetime) -> None:
        """Start the run of `slot` and plan the schedule's next one (never a burst of past slots)."""
        if schedule.recurring:
            self._plan(schedule, fresh=False, after=slot)
            if schedule.id in self._in_flight:
                # the previous run goes on (a long task, one waiting for an approval): no second
                # one beside it, and no backlog that would fire in a burst once it ends
                log.info("schedule %s: slot %s skipped, the previous run is still going", schedule.id, slot)
                return
        else:
            self.planned.pop(schedule.id, None)
        self._in_flight.add(schedule.id)
        task = asyncio.create_task(self._claim_and_run(schedule, slot), name=f"schedule {schedule.id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _claim_and_run(self, schedule: Schedule, slot: datetime) -> None:
        place = RunPlace(self._slots)
        mark = RunMark(self.store, schedule.id)
        try:
            # a place first, then the claim: a claimed run is one being delivered (a restart
            # never runs a claimed slot again, so a claim waiting for a place would be lost)
            await place.take()
            current = await self._current(schedule)
            if current is None:
                return
            schedule = current
            # marked before the claim, so a worker that sees no mark sees no run going on; a
            # one-shot runs even beside a manual run, as on one server (else it never would)
            if not await mark.take() and schedule.recurring:
                log.info(
                    "schedule %s: slot %s skipped, the previous run is still going on another worker",
                    schedule.id,
                    format_time(slot),
                )
                return
            if not await self.store.claim(schedule.id, slot, self.worker):
                log.debug("schedule %s: slot %s taken by another worker", schedule.id, format_time(slot))
                if not schedule.recurring:
                    self.schedules[schedule.id] = schedule.model_copy(update={"status": "completed"})
                return
            await self._run(schedule, slot, place=place, mark=mark)
        except DuragentError as exc:
            log.error("schedule %s: run of %s failed: %s", schedule.id, format_time(slot), exc)
        finally:
            place.give_back()
            self._in_flight.discard(schedule.id)
            await mark.let_go()

    async def _run(
        self,
        schedule: Schedule,
        slot: datetime,
        *,
        manual: bool = False,
        place: RunPlace | None = None,
        mark: RunMark | None = None,
    ) -> RunRecord:
        """Deliver (with retries), record the run, complete a one-shot; `mark` is let go once delivered."""
        began = time.monotonic()
        attempts = 0
        error: str | None = None
        session_id: str | None = None
        undeliverable = False
        retries = schedule.retry.max_retries if schedule.retry else 0
        place = place or RunPlace(self._slots)
        token = current_run_place.set(place)
        try:
            while True:
                attempts += 1
                await place.take()
                try:
                    session_id = await self._deliver_once(schedule, slot)
                    error = None
                    break
                except DeliveryFailed as exc:
                    error, session_id, undeliverable = str(exc), exc.session_id, exc.pause
                    if not exc.retry or attempts > retries or schedule.retry is None:
                        break
                    wait = schedule.retry.wait_before(attempts) * random.uniform(0.8, 1.2)
                    log.warning(
                        "schedule %s: attempt %d failed (%s); retry in %.1fs",
                        schedule.id,
                        attempts,
                        exc,
                        wait,
                    )
                    place.give_back()
                    await asyncio.sleep(wait)
                    if not await self._may_retry(schedule.id) and not manual:
                        error = f"{error} (not retried: the schedule was paused, cancelled or removed)"
                        break
        finally:
            current_run_place.reset(token)
            place.give_back()
            if not manual:  # delivered: the next slot may run while this one's history is written
                self._in_flight.discard(schedule.id)
            if mark is not None:
                await mark.let_go()
        record = RunRecord(
            slot,
            "ok" if error is None else "error",
            ts=self.clock(),
            attempts=attempts,
            duration_ms=int((time.monotonic() - began) * 1000),
            error=error,
            session_id=session_id,
            worker=self.worker,
        )
        if await self._exists(schedule.id):  # (a run history of a removed schedule would linger)
            await self.store.record_run(schedule.id, record)
        if error is not None:
            log.warning("schedule %s: run failed after %d attempt(s): %s", schedule.id, attempts, error)
        if undeliverable and schedule.recurring and not manual:
            # every later slot would fail the same way: kept, paused, until a person resumes it
            with contextlib.suppress(ScheduleNotFound, UsageError):
                await self.pause(schedule.id, reason=error)
                log.warning("schedule %s: paused (%s); resume it once fixed", schedule.id, error)
        if not manual and not schedule.recurring:
            await self._finish_one_shot(schedule)
        await self._remember_session(schedule.id, session_id)
        self.run_finished.set()
        self.run_finished = asyncio.Event()
        return record

    async def _deliver_once(self, schedule: Schedule, slot: datetime) -> str:
        """One attempt; any error (a full disk, a store that broke) is a failed attempt, so it is
        retried and recorded in the run history rather than leaving only the `started` line."""
        try:
            return await self.deliver(schedule, slot)
        except DeliveryFailed:
            raise
        except DuragentError as exc:
            raise DeliveryFailed(str(exc)) from exc
        except Exception as exc:
            log.exception("schedule %s: delivering the run of %s failed", schedule.id, format_time(slot))
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc

    async def _current(self, planned: Schedule) -> Schedule | None:
        """The schedule as stored now, if it is still to run: paused, cancelled or removed
        meanwhile (by a person, another worker's API, a file edit), it is not delivered."""
        try:
            current = await self.store.get(planned.id)
        except ScheduleNotFound:
            self.schedules.pop(planned.id, None)
            self.planned.pop(planned.id, None)
            return None
        if current.status != "active":
            self.schedules[current.id] = current
            self.planned.pop(current.id, None)
            return None
        return current

    async def _exists(self, schedule_id: str) -> bool:
        try:
            await self.store.get(schedule_id)
        except ScheduleNotFound:
            return False
        except DuragentError:
            return True  # there, though a person's edit broke it
        return True

    async def _may_retry(self, schedule_id: str) -> bool:
        """False once the schedule was paused, cancelled or removed. A one-shot that is `completed`
        is this very run's: another worker (or a reload) that found its slot claimed marks it so."""
        try:
            current = await self.store.get(schedule_id)
        except DuragentError:
            return False
        return current.status == "active" or (current.status == "completed" and not current.recurring)

    async def _remember_session(self, schedule_id: str, session_id: str | None) -> None:
        """A schedule keeps the session its run went to: the one its first run made, or the one
        made when its session was deleted or ended (else every run would make another)."""
        schedule = self.schedules.get(schedule_id)
        if schedule is None or session_id is None or schedule.destination.session_id == session_id:
            return
        if schedule.destination.gateway is not None:
            return  # a chat's session changes with /reset: the chat is the destination

        def in_session(current: Schedule) -> Schedule | None:
            # only the session changes, in the schedule as stored now: a pause, a cancel or an
            # edit that landed while this run went on is kept
            if current.destination.gateway is not None or current.destination.session_id == session_id:
                return None
            destination = current.destination.model_copy(update={"session_id": session_id})
            return current.model_copy(update={"destination": destination})

        try:
            updated = await self.store.update(schedule_id, in_session, f"runs in session {session_id}")
        except ScheduleNotFound:
            return  # removed while the run went on
        except DuragentError as exc:  # (a person's edit broke the file, the database is away)
            log.warning(
                "schedule %s: its run's session %s not written down: %s", schedule_id, session_id, exc
            )
            return
        self.schedules[schedule_id] = updated

    # --- watching files ----------------------------------------------------------------------

    def _folder_changed(self) -> bool:
        """True when a schedule file was added, edited or removed since the last look.

        A stat of each file once a second, rather than inotify: the server already watches other
        folders, and inotify instances are a small per-user budget shared by every process.
        """
        folder = self.watch_folder
        if folder is None:
            return False
        try:
            with os.scandir(folder) as entries:
                signature = frozenset(
                    (entry.name, entry.stat().st_mtime_ns, entry.stat().st_size)
                    for entry in entries
                    if entry.name.endswith(".yaml")
                )
        except FileNotFoundError:
            signature = frozenset()
        changed = self._folder_signature is not None and signature != self._folder_signature
        self._folder_signature = signature
        return changed


def _with_status(schedule: Schedule, status: str) -> Schedule:
    return schedule.model_copy(update={"status": status})


def _cancelled_unless_finished(current: Schedule) -> Schedule | None:
    """Cancelled, unless it completed or was cancelled already."""
    return None if current.status in FINISHED else _with_status(current, "cancelled")


def _timing(schedule: Schedule) -> tuple[object, ...]:
    return (
        schedule.status,
        schedule.at,
        schedule.every,
        schedule.cron,
        schedule.timezone,
        schedule.created_at,
    )


def _grace(schedule: Schedule, settings: SchedulerSettings) -> timedelta:
    """How late a missed run may still run: the schedule's own `misfire_grace` (`0s` too: never
    late), else the server's."""
    return schedule.misfire_grace if schedule.misfire_grace is not None else settings.misfire_grace


def _ago(delta: timedelta) -> str:
    from duragent.durations import format_duration

    return format_duration(timedelta(seconds=int(delta.total_seconds())))


def _store_away(exc: Exception) -> bool:
    """Whether `exc` is the schedule store's database away or silent (a restart, a partition, a
    failover): an outage to wait out, not a bug. Timeouts and refused or dropped connections."""
    if isinstance(exc, TimeoutError | OSError):
        return True
    asyncpg = sys.modules.get("asyncpg")  # (loaded only when a store uses PostgreSQL)
    if asyncpg is None:
        return False
    errors = asyncpg.exceptions
    away = (
        errors.PostgresConnectionError,
        errors.ConnectionDoesNotExistError,
        errors.OperatorInterventionError,
        errors.TooManyConnectionsError,
    )
    return isinstance(exc, away)
