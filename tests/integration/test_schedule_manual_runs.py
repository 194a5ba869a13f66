"""`duragent schedule run` / POST .../run: a run now, never a second one beside a run in progress."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from duragent.errors import UsageError
from duragent.scheduling.service import Scheduler
from tests.integration.test_scheduler import T0, Clock, Held, build, harness, until

__all__ = ["harness"]  # the fixtures


async def test_a_manual_run_is_refused_while_one_goes_on_and_a_slot_meanwhile_is_skipped(
    harness: Callable[..., Scheduler],
) -> None:
    clock, deliver = Clock(T0), Held()
    scheduler = harness(clock, deliver)
    await scheduler.start()
    made = await scheduler.create(build(scheduler, every="1m"))
    first = asyncio.create_task(scheduler.run_now(made.id))
    await until(lambda: deliver.in_progress == 1)

    clock.now = T0 + timedelta(seconds=2)  # a second click, a moment later
    with pytest.raises(UsageError, match="is being run right now"):
        await asyncio.wait_for(scheduler.run_now(made.id), 10)
    clock.now = T0 + timedelta(minutes=1)  # the schedule's own slot comes while it runs
    scheduler.poke()
    await until(lambda: scheduler.planned[made.id] == T0 + timedelta(minutes=2))
    assert deliver.in_progress == 1

    deliver.release.set()
    record = await asyncio.wait_for(first, 10)
    assert record.status == "ok"
    assert deliver.delivered == [(made.id, T0)]
    again = await scheduler.run_now(made.id)  # once it is over, a run now runs
    assert again.status == "ok"


async def test_a_manual_run_is_refused_while_a_planned_run_goes_on(harness: Callable[..., Scheduler]) -> None:
    clock, deliver = Clock(T0), Held()
    scheduler = harness(clock, deliver)
    await scheduler.start()
    made = await scheduler.create(build(scheduler, every="1m"))
    clock.now = T0 + timedelta(minutes=1)
    scheduler.poke()
    await until(lambda: deliver.in_progress == 1)

    clock.now = T0 + timedelta(minutes=1, seconds=5)
    with pytest.raises(UsageError, match="is being run right now"):
        await asyncio.wait_for(scheduler.run_now(made.id), 10)
    assert deliver.in_progress == 1
    finished = scheduler.run_finished
    deliver.release.set()
    await asyncio.wait_for(finished.wait(), 10)
    assert [r.status for r in await scheduler.runs(made.id)] == ["started", "ok"]
