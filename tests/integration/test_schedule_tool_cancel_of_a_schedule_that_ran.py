"""The `schedule` tool's cancel of a one-shot that has already run says so, and leaves it
`completed`: it answered "cancelled schedule sch_…" and rewrote the file as cancelled, so the
agent told the user a reminder that had fired would never come."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from duragent.scheduling.service import Scheduler
from duragent.tools.base import ToolContext
from duragent.tools.schedule import ScheduleArgs, ScheduleTool
from tests.integration.test_scheduler import T0, Clock, Recorder, build, harness, until

__all__ = ["harness"]  # the fixture


async def test_cancelling_a_one_shot_that_ran_is_refused_and_it_stays_completed(
    harness: Callable[..., Scheduler], tmp_path: Path
) -> None:
    clock = Clock(T0)
    scheduler = harness(clock, Recorder())
    await scheduler.start()
    made = await scheduler.create(build(scheduler, **{"in": "5m"}))
    clock.now = T0 + timedelta(minutes=5)
    scheduler.poke()
    await until(lambda: scheduler.schedules[made.id].status == "completed")
    ctx = ToolContext(agent="helper", session_id="s_DEST", workdir=tmp_path, schedules=scheduler)
    tool = ScheduleTool()

    result = await tool.run(ScheduleArgs.model_validate({"action": "cancel", "schedule_id": made.id}), ctx)

    assert not result.ok
    assert result.content == (
        f"schedule not cancelled: schedule {made.id} has already run (completed): nothing to cancel"
    )
    assert "status: completed" in (tmp_path / "schedules" / f"{made.id}.yaml").read_text()


async def test_cancelling_a_schedule_that_is_to_run_still_works(
    harness: Callable[..., Scheduler], tmp_path: Path
) -> None:
    scheduler = harness(Clock(T0), Recorder())
    await scheduler.start()
    made = await scheduler.create(build(scheduler, every="1h"))
    ctx = ToolContext(agent="helper", session_id="s_DEST", workdir=tmp_path, schedules=scheduler)

    result = await ScheduleTool().run(
        ScheduleArgs.model_validate({"action": "cancel", "schedule_id": made.id}), ctx
    )

    assert result.ok, result.content
    assert "status: cancelled" in (tmp_path / "schedules" / f"{made.id}.yaml").read_text()
    assert made.id not in scheduler.planned
