"""A one-shot's own `misfire_grace` decides how late it may still run after a restart, `0s` too:
never late (it was taken for "not set", and the server's 1h applied: it ran anyway)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from duragent.scheduling.service import Scheduler
from tests.integration.test_scheduler import T0, Clock, Recorder, build, harness, until_runs

__all__ = ["harness"]  # the fixture


@pytest.mark.parametrize(
    ("grace", "late", "runs_late"),
    [(timedelta(0), timedelta(seconds=1), False), (timedelta(minutes=5), timedelta(minutes=4), True)],
)
async def test_a_one_shots_own_grace_decides_whether_it_runs_late(
    harness: Callable[..., Scheduler], grace: timedelta, late: timedelta, runs_late: bool
) -> None:
    clock = Clock(T0)
    first = harness(clock, Recorder())
    await first.start()
    made = await first.create(build(first, **{"in": "10m"}).model_copy(update={"misfire_grace": grace}))
    await first.stop()

    assert made.at is not None
    clock.now = made.at + late  # the server was down across its moment
    second = harness(clock, Recorder())
    await second.start()

    if runs_late:
        runs = await until_runs(second, made.id, lambda runs: bool(runs) and runs[-1].status == "ok")
        assert runs[-1].slot == made.at
    else:
        runs = await second.runs(made.id)  # decided as it started: nothing left to fire
        assert made.id not in second.planned
        assert [(r.status, r.error) for r in runs] == [("missed", "the server was down; 1s late")]
        assert second.schedules[made.id].status == "completed"
