"""A recurring schedule whose slot came while the server was down (a restart for an upgrade at
02:30) runs that slot once at start when it is within `misfire_grace`; it was skipped silently
until the next day. Later than the grace, or a slot already run, it is not run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from duragent.scheduling.service import Scheduler
from tests.integration.test_scheduler import Clock, Recorder, build, harness, until, until_runs

__all__ = ["harness"]  # the fixture

#: 02:30 in Paris on a summer night.
BACKUP = datetime(2026, 6, 2, 0, 30, tzinfo=UTC)


async def test_a_nightly_slot_missed_during_a_restart_runs_once_at_start(
    harness: Callable[..., Scheduler],
) -> None:
    clock = Clock(BACKUP - timedelta(hours=12))
    first = harness(clock, Recorder())
    await first.start()
    made = await first.create(build(first, cron="30 2 * * *", timezone="Europe/Paris"))
    await first.stop()

    clock.now = BACKUP + timedelta(minutes=2)  # down from 02:29 to 02:32
    deliver = Recorder()
    second = harness(clock, deliver)
    await second.start()

    runs = await until_runs(second, made.id, lambda runs: bool(runs) and runs[-1].status == "ok")
    assert [(r.slot, r.status) for r in runs] == [(BACKUP, "started"), (BACKUP, "ok")]
    assert deliver.delivered == [(made.id, BACKUP)]
    await until(lambda: second.planned.get(made.id) == BACKUP + timedelta(days=1))


@pytest.mark.parametrize("ran_before", [False, True], ids=["beyond the grace", "run before the restart"])
async def test_a_missed_slot_is_not_run_late_beyond_the_grace_or_twice(
    harness: Callable[..., Scheduler], ran_before: bool
) -> None:
    clock = Clock(BACKUP - timedelta(hours=12))
    first = harness(clock, Recorder())
    await first.start()
    made = await first.create(build(first, cron="30 2 * * *", timezone="Europe/Paris"))
    if ran_before:
        clock.now = BACKUP
        first.poke()
        await until_runs(first, made.id, lambda runs: bool(runs) and runs[-1].status == "ok")
        clock.now = BACKUP + timedelta(minutes=2)
    else:
        clock.now = BACKUP + timedelta(hours=1, seconds=1)  # the default grace is 1h
    await first.stop()

    deliver = Recorder()
    second = harness(clock, deliver)
    await second.start()

    assert second.planned[made.id] == BACKUP + timedelta(days=1)
    # The next night comes: a late run of the missed slot, dispatched before it (or still going,
    # which would skip it), would be delivered first.
    clock.now = BACKUP + timedelta(days=1)
    second.poke()
    await until(lambda: deliver.delivered)
    assert deliver.delivered == [(made.id, BACKUP + timedelta(days=1))]
