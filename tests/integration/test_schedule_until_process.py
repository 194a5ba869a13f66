"""`until_process`: a schedule that follows a background process is cancelled when the process ends."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from duragent.errors import UsageError
from duragent.processes.manager import ProcessManager, SpawnRequest
from duragent.scheduling.service import Scheduler
from duragent.scheduling.spec import Schedule
from duragent.scheduling.store import FileScheduleStore
from duragent.tools.base import ToolContext
from duragent.tools.registry import builtin_tool, call_tool
from tests.waiting import until


async def nowhere(schedule: Schedule, slot: datetime) -> str:
    return "s_OWNER"


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[ToolContext]:
    scheduler = Scheduler(FileScheduleStore(tmp_path / "schedules"), nowhere)
    processes = ProcessManager(tmp_path / "processes")
    processes.on_end.append(scheduler.process_ended)
    await scheduler.start()
    await processes.start()
    work = tmp_path / "work"
    work.mkdir()
    yield ToolContext(
        agent="helper", session_id="s_OWNER", workdir=work, schedules=scheduler, processes=processes
    )
    await processes.close()
    await scheduler.stop()


async def spawn(ctx: ToolContext, command: str) -> str:
    assert ctx.processes is not None
    request = SpawnRequest(
        agent="helper",
        session_id="s_OWNER",
        command=command,
        work_root=ctx.workdir,
        env={"PATH": os.environ["PATH"]},
    )
    return (await ctx.processes.spawn(request)).handle


async def test_a_schedule_linked_to_a_process_is_cancelled_when_it_ends(ctx: ToolContext) -> None:
    handle = await spawn(ctx, "sleep 60")
    result = await call_tool(
        builtin_tool("schedule"),
        {"action": "create", "every": "10m", "task": "report on the build", "until_process": handle},
        ctx,
    )
    assert result.ok, result.content
    assert result.data is not None
    schedule_id = result.data["schedule"]["id"]
    assert ctx.schedules is not None
    assert ctx.schedules.schedules[schedule_id].until_process == handle
    assert ctx.processes is not None
    await ctx.processes.kill(handle, "helper")
    scheduler = ctx.schedules
    await until(lambda: scheduler.schedules[schedule_id].status == "cancelled")
    assert schedule_id not in scheduler.planned
    stored = (scheduler.store.folder / f"{schedule_id}.yaml").read_text()  # type: ignore[attr-defined]
    assert "status: cancelled" in stored


async def test_a_schedule_cannot_follow_a_process_that_ended_or_is_unknown(ctx: ToolContext) -> None:
    assert ctx.processes is not None
    handle = await spawn(ctx, "true")
    await ctx.processes.wait(handle, 10)
    tool = builtin_tool("schedule")
    ended = await call_tool(
        tool, {"action": "create", "every": "10m", "message": "x", "until_process": handle}, ctx
    )
    assert not ended.ok
    assert "has already ended" in ended.content
    unknown = await call_tool(
        tool, {"action": "create", "every": "10m", "message": "x", "until_process": "proc_NOPE"}, ctx
    )
    assert not unknown.ok
    assert "no background process 'proc_NOPE'" in unknown.content
    # where the agent finds its processes: another tool's list, not this one's
    assert "(background_process action list shows yours)" in unknown.content


async def test_a_schedule_made_as_its_process_ends_is_not_left_running_for_ever(ctx: ToolContext) -> None:
    """The process can end between the check that it runs and the schedule being stored: the
    scheduler heard of the end then, and refuses (nothing else would cancel the schedule)."""
    assert ctx.processes is not None
    assert ctx.schedules is not None
    handle = await spawn(ctx, "true")
    record = await ctx.processes.wait(handle, 10)
    scheduler = ctx.schedules
    await until(lambda: handle in scheduler._ended_processes)
    checked_while_running = Schedule.model_validate(
        {
            "id": "sch_01RACE",
            "agent": "helper",
            "created_at": datetime.now(UTC),
            "every": "10m",
            "message": "x",
            "until_process": record.handle,
        }
    )

    with pytest.raises(UsageError, match="has ended"):
        await scheduler.create(checked_while_running)
    assert "sch_01RACE" not in scheduler.schedules
