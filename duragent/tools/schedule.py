"""`schedule`: the agent sets up work for later (create, list, cancel).

A schedule made here lands in the session that made it, and in its chat when the session is a
chat's: a reminder (`message`) is delivered as is, a `task` runs as a turn of the agent with its
tools. A scheduled task's own turn may not make more schedules unless `scheduling.
tasks_may_schedule` allows it. What an agent schedules itself is bounded, so a wrong or injected
call cannot flood a chat or the model bill: recurring runs at least `scheduling.agent_min_interval`
apart, at most `scheduling.agent_max_active` of its own active at once.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field, model_validator

from duragent.durations import format_duration
from duragent.errors import DuragentError
from duragent.scheduling.spec import Destination, Schedule, ScheduleRequest, format_time, next_slot
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult


class ScheduleArgs(ToolArgs, ScheduleRequest):
    """Arguments of `schedule`."""

    action: Literal["create", "list", "cancel"] = Field(description="create, list or cancel.")
    schedule_id: str | None = Field(None, description="For cancel: the schedule's id (sch_...).")

    @model_validator(mode="after")
    def _cancel_needs_id(self) -> ScheduleArgs:
        if self.action == "cancel" and not self.schedule_id:
            raise ValueError("cancel needs schedule_id (see action list)")
        return self


class ScheduleTool(Tool[ScheduleArgs]):
    """Create, list and cancel this agent's schedules."""

    name = "schedule"
    description = (
        "Schedule work for later. action=create with exactly one timing (at: RFC 3339 time, "
        "in: a delay like 20m, every: an interval like 1h, or cron: '0 9 * * MON-FRI' with optional "
        "timezone) and exactly one payload (message: text delivered as is, or task: instructions you "
        "carry out with your tools when it fires). It reaches this conversation (and its chat); "
        "until_process: a background process handle cancels it when that process ends. "
        "action=list shows your schedules; action=cancel with schedule_id stops one."
    )
    Args = ScheduleArgs

    async def run(self, args: ScheduleArgs, ctx: ToolContext) -> ToolResult:
        """Do the action against the server's scheduler."""
        if ctx.schedules is None:
            return ToolResult(False, "schedules are not available here (no server scheduler)")
        if args.action == "list":
            return await _list(ctx)
        if args.action == "cancel":
            assert args.schedule_id is not None  # checked by the model validator
            try:
                schedule = await ctx.schedules.cancel(args.schedule_id, agent=ctx.agent)
            except DuragentError as exc:
                return ToolResult(False, f"schedule not cancelled: {exc}")
            return ToolResult(True, f"cancelled schedule {schedule.id}", {"schedule": schedule.to_document()})
        return await _create(args, ctx)

    def invocation(self, args: ScheduleArgs, ctx: ToolContext) -> str:
        """`create <timing> <payload kind>`, `list`, or `cancel <id>`."""
        if args.action == "cancel":
            return f"cancel {args.schedule_id}"
        if args.action == "list":
            return "list"
        payload = "message" if args.message is not None else "task"
        return f"create {payload}"


async def _create(args: ScheduleArgs, ctx: ToolContext) -> ToolResult:
    scheduler = ctx.schedules
    assert scheduler is not None
    if ctx.scheduled_by is not None and not scheduler.settings.tasks_may_schedule:
        return ToolResult(
            False,
            f"this turn is scheduled task {ctx.scheduled_by}: it may not create schedules "
            "(scheduling.tasks_may_schedule is off)",
        )
    metadata = ctx.session_metadata
    gateway, chat_id = metadata.get("gateway"), metadata.get("chat_id")
    destination = Destination(
        session_id=ctx.session_id,
        gateway=str(gateway) if gateway and chat_id else None,
        chat_id=str(chat_id) if gateway and chat_id else None,
    )
    request = ScheduleRequest.model_validate(
        args.model_dump(by_alias=True, exclude={"action", "schedule_id"})
    )
    if request.until_process is not None:
        refusal = _process_refusal(request.until_process, ctx)
        if refusal is not None:
            return ToolResult(False, f"schedule not created: {refusal}")
    try:
        schedule = request.build(
            ctx.agent, destination=destination, created_by=f"session {ctx.session_id}", now=scheduler.clock()
        )
        refusal = await _limit_refusal(schedule, ctx)
        if refusal is not None:
            return ToolResult(False, f"schedule not created: {refusal}")
        schedule = await scheduler.create(schedule)
    except (ValueError, DuragentError) as exc:
        return ToolResult(False, f"schedule not created: {exc}")
    planned = scheduler.planned.get(schedule.id)
    kind = "recurring" if schedule.recurring else "one-shot"
    when = f"; first run {format_time(planned)}" if planned else ""
    return ToolResult(
        True,
        f"created {kind} schedule {schedule.id} ({schedule.timing_text()}, {schedule.payload_kind}){when}",
        {"schedule": schedule.to_document()},
    )


# cron slots looked at for the shortest gap: enough to see `*/10 * * * * *` or `0-5 9 * * *`
_CRON_SLOTS_CHECKED = 12


async def _limit_refusal(schedule: Schedule, ctx: ToolContext) -> str | None:
    """Why the agent may not make this schedule itself (None when it may)."""
    scheduler = ctx.schedules
    assert scheduler is not None
    settings = scheduler.settings
    gap = _shortest_gap(schedule, scheduler.clock())
    if gap is not None and gap < settings.agent_min_interval:
        apart = "" if schedule.every is not None else f" (runs {format_duration(gap)} apart)"
        return (
            f"{schedule.timing_text()} is too often{apart}: a schedule you make runs at most every "
            f"{format_duration(settings.agent_min_interval)} (scheduling.agent_min_interval in duragent.yaml)"
        )
    own = [
        s
        for s in await scheduler.list_schedules(agent=ctx.agent)
        if s.status == "active" and s.created_by.startswith("session ")
    ]
    if len(own) >= settings.agent_max_active:
        return (
            f"you already have {len(own)} active schedules of your own, the most allowed "
            "(scheduling.agent_max_active in duragent.yaml); cancel one first (action=list shows them)"
        )
    return None


def _shortest_gap(schedule: Schedule, now: datetime) -> timedelta | None:
    """The shortest time between two runs of a recurring schedule (None for a one-shot)."""
    if schedule.every is not None:
        return schedule.every
    if schedule.cron is None:
        return None
    slots: list[datetime] = []
    moment = now
    for _ in range(_CRON_SLOTS_CHECKED):
        slot = next_slot(schedule, moment)
        if slot is None:
            break
        slots.append(slot)
        moment = slot
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    return min(gaps, default=None)


async def _list(ctx: ToolContext) -> ToolResult:
    scheduler = ctx.schedules
    assert scheduler is not None
    schedules = await scheduler.list_schedules(agent=ctx.agent)
    if not schedules:
        return ToolResult(True, "no schedules", {"schedules": []})
    rows = [_summary(s, scheduler.planned.get(s.id)) for s in schedules]
    return ToolResult(
        True, "\n".join(json.dumps(row, ensure_ascii=False) for row in rows), {"schedules": rows}
    )


def _summary(schedule: Schedule, planned: datetime | None) -> dict[str, object]:
    row: dict[str, object] = {
        "id": schedule.id,
        "status": schedule.status,
        "timing": schedule.timing_text(),
        schedule.payload_kind: schedule.payload_text,
    }
    if schedule.label:
        row["label"] = schedule.label
    if schedule.until_process:
        row["until_process"] = schedule.until_process
    if planned is not None:
        row["next_run"] = format_time(planned)
    return row


def _process_refusal(handle: str, ctx: ToolContext) -> str | None:
    """Why `until_process` cannot name this process (None when it is one of ours and running)."""
    from duragent.processes.record import ProcessNotFound, check_followable

    if ctx.processes is None:
        return "until_process needs background processes, which are not available here"
    try:
        check_followable(ctx.processes.get(handle, ctx.agent), ctx.agent)
    except ProcessNotFound as exc:
        return f"until_process: {exc} (background_process action list shows yours)"
    except DuragentError as exc:
        return f"until_process: {exc}"
    return None
