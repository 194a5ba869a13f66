"""Two workers on one PostgreSQL: a one-shot's retry goes on although the other worker, finding
its slot claimed, marked it completed meanwhile (it used to be dropped as if it were cancelled)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from duragent.scheduling.postgres import PostgresScheduleStore
from duragent.scheduling.service import Scheduler, SchedulerSettings
from duragent.scheduling.spec import Schedule
from duragent.testing.postgres import temporary_schema
from tests.integration.test_scheduler import T0, Clock, Recorder, build, until, until_runs


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


class Counted(Recorder):
    """A delivery that counts its attempts, failed ones too."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def __call__(self, schedule: Schedule, slot: datetime) -> str:
        self.attempts += 1
        return await super().__call__(schedule, slot)


async def test_a_retry_survives_another_worker_completing_the_one_shot(pg_url: str) -> None:
    clock, first_try_fails = Clock(T0), Counted()
    first_try_fails.failures = 1
    settings = SchedulerSettings(poll_interval=3600)
    a = Scheduler(PostgresScheduleStore(pg_url), first_try_fails, clock=clock, worker="a", settings=settings)
    b = Scheduler(PostgresScheduleStore(pg_url), Recorder(), clock=clock, worker="b", settings=settings)
    try:
        await a.start()
        made = await a.create(build(a, **{"in": "1m", "max_retries": 2, "retry_delay": "1s"}))
        clock.now = T0 + timedelta(minutes=1)
        a.poke()
        await until(lambda: first_try_fails.attempts == 1)

        await b.start()  # worker b (or its poll) reads the schedules while a waits to retry
        assert b.schedules[made.id].status == "completed"  # its slot is claimed: it has run

        runs = await until_runs(a, made.id, lambda runs: bool(runs) and runs[-1].status != "started")
        assert (runs[-1].status, runs[-1].attempts, runs[-1].error) == ("ok", 2, None)
        assert first_try_fails.delivered == [(made.id, T0 + timedelta(minutes=1))]
    finally:
        await a.stop()
        await b.stop()
