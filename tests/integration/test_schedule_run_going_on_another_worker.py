"""Two workers on one PostgreSQL: while one runs a recurring schedule, the other skips its next
slots (as one server does), the lock saying so survives a dropped connection, and dies with a
worker that dies."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from duragent.errors import UsageError
from duragent.scheduling.postgres import PostgresScheduleStore
from duragent.scheduling.run_locks import run_lock_key
from duragent.scheduling.service import Scheduler, SchedulerSettings
from duragent.scheduling.spec import Schedule, format_time
from duragent.stores.postgres.pool import parse_postgres_url
from duragent.testing.postgres import temporary_schema
from tests.integration.test_scheduler import T0, Clock, build, until_runs
from tests.waiting import eventually, until

SKIPPED_ELSEWHERE = "the previous run is still going on another worker"
WORKER = Path(__file__).with_name("schedule_worker.py")


class HeldRuns:
    """A delivery whose runs go on until the test lets them end (a task whose model has not answered)."""

    def __init__(self) -> None:
        self.started: list[datetime] = []
        self.release = asyncio.Event()

    async def __call__(self, schedule: Schedule, slot: datetime) -> str:
        self.started.append(slot)
        await self.release.wait()
        return "s_DEST"


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


@pytest.fixture
async def workers(pg_url: str) -> AsyncIterator[tuple[list[Scheduler], list[HeldRuns]]]:
    """Workers A and B, each with a clock of its own (so the test says whose timer fires when)."""
    runs = [HeldRuns(), HeldRuns()]
    workers = [
        Scheduler(
            PostgresScheduleStore(pg_url),
            deliver,
            clock=Clock(T0),
            worker=name,
            settings=SchedulerSettings(poll_interval=3600),
        )
        for name, deliver in zip(("a", "b"), runs, strict=True)
    ]
    for worker in workers:
        await worker.start()
    yield workers, runs
    for held in runs:
        held.release.set()
    for worker in workers:
        await worker.stop()


def skipped_elsewhere(caplog: pytest.LogCaptureFixture, *, minutes: int) -> bool:
    """Whether a worker logged skipping the slot T0 + `minutes` (its own slot, not an earlier one
    a slow worker's claim may still be skipping)."""
    return f"slot {format_time(T0 + timedelta(minutes=minutes))} skipped, {SKIPPED_ELSEWHERE}" in caplog.text


def tick(workers: list[Scheduler], minutes: int) -> None:
    """The workers' timers fire at T0 + `minutes`."""
    for worker in workers:
        assert isinstance(worker.clock, Clock)
        worker.clock.now = T0 + timedelta(minutes=minutes)
        worker.poke()


async def lock_holder(pg_url: str, schedule_id: str) -> int | None:
    """The server pid of the connection holding the schedule's run lock (None: nobody holds it)."""
    target = parse_postgres_url(pg_url)
    key = run_lock_key(target.schema, schedule_id)
    connection = await asyncpg.connect(target.dsn)
    try:
        pid: int | None = await connection.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = $1 AND objid = $2 AND objsubid = 1",
            (key >> 32) & 0xFFFF_FFFF,
            key & 0xFFFF_FFFF,
        )
        return pid
    finally:
        await connection.close()


async def terminate(pg_url: str, pid: int) -> None:
    connection = await asyncpg.connect(parse_postgres_url(pg_url).dsn)
    try:
        await connection.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await connection.close()


async def a_runs_the_first_slot_and_b_finds_it_claimed(
    a: Scheduler, b: Scheduler, runs_a: HeldRuns, schedule_id: str
) -> None:
    """A's timer fires first at 09:01 and its run goes on; B's, a moment later, finds 09:01 claimed
    and plans 09:02."""
    tick([a], 1)
    await until(lambda: runs_a.started)
    tick([b], 1)
    await until(lambda: b.planned.get(schedule_id) == T0 + timedelta(minutes=2))


async def test_a_worker_skips_the_slot_while_another_worker_runs_the_previous_one(
    workers: tuple[list[Scheduler], list[HeldRuns]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="duragent.scheduling.service")
    (a, b), (runs_a, runs_b) = workers
    minutely = await a.create(build(a, every="1m"))
    await b.reload()  # what its poll would do

    await a_runs_the_first_slot_and_b_finds_it_claimed(a, b, runs_a, minutely.id)

    tick([a, b], 2)  # B's timer fires for 09:02 while A's run of 09:01 goes on
    await until(lambda: runs_b.started or skipped_elsewhere(caplog, minutes=2))
    await until(lambda: a.planned.get(minutely.id) == T0 + timedelta(minutes=3))  # (A skipped it too)
    assert runs_b.started == []
    assert runs_a.started == [T0 + timedelta(minutes=1)]

    runs_a.release.set()  # A's run ends: the next slot runs again, once, on either worker
    runs_b.release.set()
    await until_runs(a, minutely.id, lambda runs: [r.status for r in runs] == ["started", "ok"])
    tick([a, b], 3)
    await until(lambda: len(runs_a.started) + len(runs_b.started) == 2)
    history = await until_runs(a, minutely.id, lambda runs: len(runs) == 4)
    assert [(run.slot, run.status) for run in history] == [
        (T0 + timedelta(minutes=1), "started"),
        (T0 + timedelta(minutes=1), "ok"),
        (T0 + timedelta(minutes=3), "started"),
        (T0 + timedelta(minutes=3), "ok"),
    ]


async def test_a_manual_run_is_refused_while_another_worker_runs_the_schedule(
    workers: tuple[list[Scheduler], list[HeldRuns]],
) -> None:
    (a, b), (runs_a, runs_b) = workers
    hourly = await a.create(build(a, every="1h"))
    await b.reload()
    tick([a], 60)
    await until(lambda: runs_a.started)
    attempt = asyncio.create_task(b.run_now(hourly.id))
    try:
        await until(lambda: attempt.done() or runs_b.started)
        assert runs_b.started == []
        with pytest.raises(UsageError, match="being run right now"):
            attempt.result()
    finally:
        attempt.cancel()


async def test_a_run_keeps_its_lock_when_the_connection_holding_it_drops(
    workers: tuple[list[Scheduler], list[HeldRuns]], pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="duragent.scheduling.service")
    (a, b), (runs_a, runs_b) = workers
    minutely = await a.create(build(a, every="1m"))
    await b.reload()
    await a_runs_the_first_slot_and_b_finds_it_claimed(a, b, runs_a, minutely.id)
    first = await lock_holder(pg_url, minutely.id)
    assert first is not None

    await terminate(pg_url, first)  # a database restart, a network blip: A's run goes on

    async def taken_again() -> int | None:
        holder = await lock_holder(pg_url, minutely.id)
        return holder if holder not in (None, first) else None

    await eventually(taken_again)
    tick([b], 2)  # (before A's run went on without a lock, and B ran 09:02 beside it)
    await until(lambda: runs_b.started or skipped_elsewhere(caplog, minutes=2))
    assert runs_b.started == []


async def test_a_worker_killed_mid_run_blocks_no_later_slot(pg_url: str, tmp_path: Path) -> None:
    runs_b = HeldRuns()
    runs_b.release.set()
    settings = SchedulerSettings(poll_interval=3600)
    b = Scheduler(PostgresScheduleStore(pg_url), runs_b, clock=Clock(T0), worker="b", settings=settings)
    await b.start()
    doomed: asyncio.subprocess.Process | None = None
    try:
        minutely = await b.create(build(b, every="1m"))
        # Worker A, a process of its own, runs the 09:01 slot (a run that would never end)...
        slot = format_time(T0 + timedelta(minutes=1))
        doomed = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), pg_url, slot, stdout=asyncio.subprocess.PIPE
        )
        assert doomed.stdout is not None
        line = await asyncio.wait_for(doomed.stdout.readline(), 30)
        assert line.decode().strip() == f"running {minutely.id}"
        assert await lock_holder(pg_url, minutely.id) is not None
        tick([b], 1)  # (B finds 09:01 taken and plans 09:02)
        await until(lambda: b.planned.get(minutely.id) == T0 + timedelta(minutes=2))
        doomed.kill()  # ...and dies mid-run: SIGKILL, no clean-up of any kind
        await doomed.wait()

        async def freed() -> bool | None:
            return True if await lock_holder(pg_url, minutely.id) is None else None

        await eventually(freed)
        tick([b], 2)  # B runs the next slot: a dead worker's run holds nothing
        await until(lambda: runs_b.started)
        assert runs_b.started == [T0 + timedelta(minutes=2)]
    finally:
        if doomed is not None and doomed.returncode is None:
            doomed.kill()
            await doomed.wait()
        await b.stop()
