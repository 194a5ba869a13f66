"""A run whose delivery fails in a way nobody planned for (a full disk, a store that broke) is a
failed run like any other: retried when the schedule asks, recorded with its error, and a
one-shot is completed, not left `started` and `active` with nothing planned."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from duragent.scheduling.service import Scheduler
from duragent.scheduling.spec import Schedule
from tests.integration.test_scheduler import T0, Clock, Recorder, build, harness, until, until_runs

__all__ = ["harness"]  # the fixtures


class DiskFull(Recorder):
    """A delivery whose session store cannot write."""

    async def __call__(self, schedule: Schedule, slot: datetime) -> str:
        self.delivered.append((schedule.id, slot))
        raise OSError(28, "No space left on device")


async def test_an_unexpected_delivery_error_is_retried_and_recorded(
    harness: Callable[..., Scheduler],
) -> None:
    clock, deliver = Clock(T0), DiskFull()
    scheduler = harness(clock, deliver)
    await scheduler.start()
    made = await scheduler.create(build(scheduler, **{"in": "1m", "max_retries": 2, "retry_delay": "10ms"}))
    clock.now = T0 + timedelta(minutes=1)
    scheduler.poke()

    runs = await until_runs(scheduler, made.id, lambda runs: bool(runs) and runs[-1].status == "error")

    assert (runs[-1].attempts, runs[-1].error) == (3, "OSError: [Errno 28] No space left on device")
    assert len(deliver.delivered) == 3
    await until(lambda: scheduler.schedules[made.id].status == "completed")
