"""A pause (or a removal) that lands while a run writes down its new session is kept: the run
changes only its session in the schedule as stored then, on files and on PostgreSQL alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from duragent.scheduling.postgres import PostgresScheduleStore
from duragent.scheduling.service import Scheduler, SchedulerSettings
from duragent.scheduling.spec import Schedule
from duragent.scheduling.store import FileScheduleStore, ScheduleNotFound, ScheduleStore
from duragent.stores.postgres.pool import parse_postgres_url
from duragent.testing.postgres import temporary_schema
from tests.integration.test_scheduler import T0, Clock, build, until_runs
from tests.waiting import eventually, until


class NewSession:
    """A delivery whose destination session was gone: each run lands in a session it made."""

    def __init__(self) -> None:
        self.delivered: list[datetime] = []

    async def __call__(self, schedule: Schedule, slot: datetime) -> str:
        self.delivered.append(slot)
        return "s_NEW"


class ChangeLandsMidWrite:
    """The running worker's store: just before the run writes its session down, `meanwhile` runs
    (after the run read the schedule, before the old code wrote it back)."""

    def __init__(self, inner: ScheduleStore) -> None:
        self._inner = inner
        self.meanwhile: Callable[[], Awaitable[object]] | None = None
        #: Set once the run's write (with the change landed before it) is done.
        self.written = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _the_runs_write(self, summary: str) -> bool:
        return summary.startswith("runs in session") and self.meanwhile is not None

    async def put(self, schedule: Schedule, summary: str) -> None:
        if not self._the_runs_write(summary):
            return await self._inner.put(schedule, summary)
        meanwhile, self.meanwhile = self.meanwhile, None
        assert meanwhile is not None
        await meanwhile()
        await self._inner.put(schedule, summary)
        self.written.set()

    async def update(self, schedule_id: str, change: Callable[..., Any], summary: str) -> Schedule:
        if not self._the_runs_write(summary):
            return await self._inner.update(schedule_id, change, summary)
        meanwhile, self.meanwhile = self.meanwhile, None
        assert meanwhile is not None
        await meanwhile()
        try:
            return await self._inner.update(schedule_id, change, summary)
        finally:
            self.written.set()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


@pytest.fixture(params=["fs", "pg"])
async def workers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Scheduler, Scheduler, ChangeLandsMidWrite, NewSession]]:
    """The worker whose run records its session (its store lets a change in mid-write), and the
    one the change comes through: the same server on files, another worker on PostgreSQL."""
    settings = SchedulerSettings(poll_interval=3600)
    deliver = NewSession()
    if request.param == "fs":
        store = ChangeLandsMidWrite(FileScheduleStore(tmp_path / "schedules"))
        running = Scheduler(store, deliver, clock=Clock(T0), settings=settings)  # type: ignore[arg-type]
        await running.start()
        yield running, running, store, deliver
        await running.stop()
        return
    async with temporary_schema() as url:
        store = ChangeLandsMidWrite(PostgresScheduleStore(url))
        running = Scheduler(store, deliver, clock=Clock(T0), worker="a", settings=settings)  # type: ignore[arg-type]
        pausing = Scheduler(PostgresScheduleStore(url), NewSession(), clock=Clock(T0), worker="b")
        await running.start()
        yield running, pausing, store, deliver
        await running.stop()
        await pausing.stop()


async def test_a_pause_landing_while_a_run_records_its_session_is_kept(
    workers: tuple[Scheduler, Scheduler, ChangeLandsMidWrite, NewSession],
) -> None:
    running, pausing, store, deliver = workers
    minutely = await running.create(build(running, every="1m"))
    store.meanwhile = lambda: pausing.pause(minutely.id)

    assert isinstance(running.clock, Clock)
    running.clock.now = T0 + timedelta(minutes=1)
    running.poke()
    await until_runs(running, minutely.id, lambda runs: [r.status for r in runs] == ["started", "ok"])
    await until(store.written.is_set)

    stored = await pausing.get(minutely.id)
    assert (stored.status, stored.destination.session_id) == ("paused", "s_NEW")
    assert (await running.get(minutely.id)).status == "paused"

    running.clock.now = T0 + timedelta(minutes=2)  # paused: 09:02 does not run
    running.poke()
    await until(lambda: minutely.id not in running.planned or len(deliver.delivered) > 1)
    assert deliver.delivered == [T0 + timedelta(minutes=1)]


async def test_a_schedule_removed_while_a_run_records_its_session_stays_removed(
    workers: tuple[Scheduler, Scheduler, ChangeLandsMidWrite, NewSession],
) -> None:
    running, removing, store, _deliver = workers
    minutely = await running.create(build(running, every="1m"))
    store.meanwhile = lambda: removing.remove(minutely.id)

    assert isinstance(running.clock, Clock)
    running.clock.now = T0 + timedelta(minutes=1)
    running.poke()
    await until(store.written.is_set)

    with pytest.raises(ScheduleNotFound):
        await removing.get(minutely.id)
    assert [s.id for s in await removing.list_schedules(include_finished=True)] == []


async def test_a_change_waits_for_a_change_in_progress_and_applies_to_its_result(pg_url: str) -> None:
    store = PostgresScheduleStore(pg_url)
    schedule = build(Scheduler(store, NewSession(), clock=Clock(T0)), every="1h")
    await store.put(schedule, "created")
    paused = schedule.model_copy(update={"status": "paused"})
    target = parse_postgres_url(pg_url)
    other = await asyncpg.connect(target.dsn, server_settings={"search_path": target.schema})
    try:
        # another worker's pause, in its transaction, holds the row...
        pause = other.transaction()
        await pause.start()
        await other.execute("SELECT 1 FROM schedules WHERE id = $1 FOR UPDATE", schedule.id)
        await other.execute("UPDATE schedules SET document = $2 WHERE id = $1", schedule.id, json_of(paused))

        def in_new_session(current: Schedule) -> Schedule:
            destination = current.destination.model_copy(update={"session_id": "s_NEW"})
            return current.model_copy(update={"destination": destination})

        # ...while this worker's run writes its session down: it waits, then changes the paused one
        change = asyncio.create_task(store.update(schedule.id, in_new_session, "runs in session s_NEW"))
        blocked = "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))"

        async def waiting() -> bool | None:
            return True if await other.fetchval(blocked, other.get_server_pid()) else None

        await eventually(waiting)
        assert not change.done()
        await pause.commit()
        result = await change
        assert (result.status, result.destination.session_id) == ("paused", "s_NEW")
        stored = await store.get(schedule.id)
        assert (stored.status, stored.destination.session_id) == ("paused", "s_NEW")
    finally:
        await other.close()
        await store.close()


def json_of(schedule: Schedule) -> str:
    import json

    return json.dumps(schedule.to_document())
