"""Two workers on one PostgreSQL: every due run fires exactly once, wherever it is claimed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from duragent.scheduling.postgres import PostgresScheduleStore
from duragent.scheduling.service import Scheduler, SchedulerSettings
from duragent.testing.postgres import temporary_schema
from tests.integration.test_scheduler import T0, Clock, Recorder, build, until


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


async def test_two_workers_fire_each_due_run_exactly_once(pg_url: str) -> None:
    clock = Clock(T0)
    deliveries = [Recorder(), Recorder()]
    workers = [
        Scheduler(
            PostgresScheduleStore(pg_url),
            deliver,
            clock=clock,
            worker=name,
            settings=SchedulerSettings(poll_interval=3600),
        )
        for name, deliver in zip(("a", "b"), deliveries, strict=True)
    ]
    for worker in workers:
        await worker.start()
    try:
        once = await workers[0].create(build(workers[0], **{"in": "1m"}))
        minutely = await workers[0].create(build(workers[0], every="1m"))
        await workers[1].reload()  # what its poll would do
        assert set(workers[1].planned) == {once.id, minutely.id}
        for minute in (1, 2, 3):
            clock.now = T0 + timedelta(minutes=minute)
            for worker in workers:
                worker.poke()
            expected = minute + 1  # the one-shot, then one per minute of the recurring one

            def delivered(expected: int = expected) -> bool:
                return sum(len(d.delivered) for d in deliveries) >= expected

            await until(delivered)
        await asyncio.sleep(0.1)  # a second delivery of any slot would show up now
        everything = sorted(slot for d in deliveries for slot in d.delivered)
        assert everything == sorted(
            [(once.id, T0 + timedelta(minutes=1))]
            + [(minutely.id, T0 + timedelta(minutes=m)) for m in (1, 2, 3)]
        )
        runs = await workers[1].runs(minutely.id)
        assert [r.status for r in runs].count("started") == 3
        assert {r.worker for r in runs if r.status == "started"} <= {"a", "b"}
    finally:
        for worker in workers:
            await worker.stop()
