"""The schedules' database going silent (a partition, a failover) makes the scheduler's reads time
out: that is an outage to wait out, logged once at WARNING with what to check, not a traceback on
every poll that reads as a bug; once the database answers again the scheduler says so."""

from __future__ import annotations

import logging

import pytest

from duragent.scheduling.postgres import PostgresScheduleStore
from duragent.scheduling.service import Scheduler, SchedulerSettings
from duragent.stores.postgres.pool import create_pool, parse_postgres_url
from tests.integration.test_a_silent_database_never_holds_a_query import SilentRelay, pg_url, relay
from tests.integration.test_scheduler import T0, Clock, Recorder
from tests.waiting import until

__all__ = ["pg_url", "relay"]  # the fixtures these tests use


def reading_failed(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if "reading schedules" in record.getMessage()]


async def test_schedules_on_a_silent_database_are_a_warning_once_without_a_traceback(
    relay: tuple[SilentRelay, str], caplog: pytest.LogCaptureFixture
) -> None:
    silent, url = relay
    target = parse_postgres_url(url)
    pool = await create_pool(target, query_timeout=0.5)
    store = PostgresScheduleStore(pool=pool, schema=target.schema)
    scheduler = Scheduler(
        store, Recorder(), clock=Clock(T0), worker="a", settings=SchedulerSettings(poll_interval=0.1)
    )
    caplog.set_level(logging.INFO, logger="duragent.scheduling")
    try:
        await scheduler.start()
        silent.speaking.clear()
        await until(lambda: reading_failed(caplog), within=20)
        failed = reading_failed(caplog)[0]
        assert failed.levelno == logging.WARNING, caplog.text
        assert failed.exc_info is None, caplog.text
        assert "check that its database is up and reachable" in failed.getMessage(), caplog.text

        silent.speaking.set()
        await until(lambda: any("works again" in r.getMessage() for r in reading_failed(caplog)), within=20)
        # once while it lasted, however many polls failed meanwhile
        assert [r.levelno for r in reading_failed(caplog)] == [logging.WARNING, logging.INFO], caplog.text
    finally:
        silent.speaking.set()
        await scheduler.stop()
        await pool.close()
