"""A schedule file that follows a process (`duragent schedule add --until-process`, or by hand)
and reaches the server only after that process ended is cancelled when it is read: it used to
stay active, firing for good, since the end it waited for had already been told."""

from __future__ import annotations

from pathlib import Path

from duragent.scheduling.spec import Destination, ScheduleRequest
from duragent.scheduling.store import render_schedule
from duragent.stores.base import utcnow
from duragent.tools.base import ToolContext
from tests.integration.test_schedule_until_process import ctx, spawn
from tests.waiting import until

__all__ = ["ctx"]  # the fixture: a scheduler and a process manager wired as the server wires them


async def test_a_schedule_read_after_its_process_ended_is_cancelled(ctx: ToolContext, tmp_path: Path) -> None:
    assert ctx.processes is not None
    assert ctx.schedules is not None
    processes, scheduler = ctx.processes, ctx.schedules
    handle = await spawn(ctx, "sleep 60")  # the command line saw it running...
    request = ScheduleRequest.model_validate({"every": "10m", "task": "report", "until_process": handle})
    made = request.build("helper", destination=Destination(), created_by="cli", now=utcnow())
    followed = await scheduler.create(
        request.build("helper", destination=Destination(), created_by="test", now=utcnow())
    )
    await processes.kill(handle, "helper")  # ...it ends before the server reads the new file
    await until(lambda: scheduler.schedules[followed.id].status == "cancelled")  # the end was told
    path = tmp_path / "schedules" / f"{made.id}.yaml"
    path.write_text(render_schedule(made))

    await scheduler.reload()

    assert scheduler.schedules[made.id].status == "cancelled"
    assert made.id not in scheduler.planned
    assert "status: cancelled" in path.read_text()
