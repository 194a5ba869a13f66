"""Schedules over HTTP: GET/POST /api/v1/schedules, GET/DELETE /api/v1/schedules/{id}, run/pause/resume.

Operators also get GET /api/admin/v1/schedules: every agent's, finished ones, last runs, broken files.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import Field

from duragent.errors import NotFound, UsageError
from duragent.scheduling.service import Scheduler
from duragent.scheduling.spec import Destination, Schedule, ScheduleRequest, format_time
from duragent.server.bodies import (
    AgentName,
    Body,
    ProblemOut,
    Reply,
    SessionId,
    json_reply,
    read_body,
    read_query,
)
from duragent.server.openapi import documented
from duragent.server.problems import FieldError, HttpProblem
from duragent.server.state import STATE
from duragent.sessions.state import resume
from duragent.stores.base import changes_by_person

if TYPE_CHECKING:
    from duragent.config import ExternalGatewayConfig


class CreateSchedule(ScheduleRequest):
    """POST /api/v1/schedules: the agent, where runs land, one timing and one payload."""

    agent: AgentName = Field(min_length=1, max_length=200, description="The agent that runs it.")
    session_id: SessionId | None = Field(
        None, description="Deliver into this session (default: one made at first run)."
    )
    gateway: str | None = Field(None, description="Deliver into this gateway's chat (with chat_id).")
    chat_id: str | None = Field(None, description="The chat on `gateway`.")


class ScheduleQuery(Body):
    """GET /api/v1/schedules query string."""

    agent: str | None = None
    all: bool = Field(False, description="Also completed and cancelled schedules.")


class ScheduleOut(Reply):
    """A schedule: its document (the YAML file's keys), its next run, and recent runs when asked."""

    schedule: dict[str, Any]
    timing: str
    next_run: str | None = None
    runs: list[dict[str, Any]] | None = None


class ScheduleList(Reply):
    """GET /api/v1/schedules."""

    schedules: list[ScheduleOut]


class RunOut(Reply):
    """One run of a schedule, as its history line."""

    run: dict[str, Any]


def _scheduler(request: web.Request) -> Scheduler:
    scheduler = request.app[STATE].schedules
    if scheduler is None:
        raise HttpProblem(503, "schedules are not available yet (the server is starting)")
    return scheduler


def _out(scheduler: Scheduler, schedule: Schedule, runs: list[dict[str, Any]] | None = None) -> ScheduleOut:
    planned = scheduler.planned.get(schedule.id)
    return ScheduleOut(
        schedule=schedule.to_document(),
        timing=schedule.timing_text(),
        next_run=format_time(planned) if planned is not None else None,
        runs=runs,
    )


@documented("Schedules, oldest first.", query=ScheduleQuery, responses={200: ScheduleList, 404: ProblemOut})
async def list_schedules(request: web.Request) -> web.Response:
    """GET /api/v1/schedules?agent=&all=."""
    query = read_query(request, ScheduleQuery)
    scheduler = _scheduler(request)
    schedules = await scheduler.list_schedules(agent=query.agent, include_finished=query.all)
    if query.agent is not None and not any(s.agent == query.agent for s in scheduler.schedules.values()):
        # a misspelt agent is a 404, not "no schedules"; a removed agent's schedules still list
        from duragent.agents.catalog import InvalidAgent

        with contextlib.suppress(InvalidAgent):  # (there, though its file is broken)
            request.app[STATE].agents.get(query.agent)
    return json_reply(ScheduleList(schedules=[_out(scheduler, s) for s in schedules]))


@documented(
    "Create a schedule.", body=CreateSchedule, responses={201: ScheduleOut, 400: ProblemOut, 404: ProblemOut}
)
async def create_schedule(request: web.Request) -> web.Response:
    """POST /api/v1/schedules -> 201 with the schedule."""
    body = await read_body(request, CreateSchedule)
    state = request.app[STATE]
    scheduler = _scheduler(request)
    agent = state.agents.get(body.agent)  # 404 for an unknown agent
    if (body.gateway is None) != (body.chat_id is None):
        missing = "body.chat_id" if body.chat_id is None else "body.gateway"
        raise _refused(missing, "gateway and chat_id go together: give both or neither")
    if body.gateway is not None:
        _check_gateway(state.config.gateways.external, body.gateway)
    if body.session_id is not None:
        # Read, not taken over: scaled out, the session may be running a turn on another worker.
        live = state.sessions.live.get(body.session_id)
        if live is not None:
            session_agent = live.log.state.agent
        else:  # 404 for an unknown session
            session_agent = (await resume(state.workspace.stores.sessions, body.session_id)).agent
        if session_agent != agent.name:
            raise _refused("body.session_id", f"session {body.session_id} is agent {session_agent}'s")
    try:
        destination = Destination(session_id=body.session_id, gateway=body.gateway, chat_id=body.chat_id)
        request_only = ScheduleRequest.model_validate(
            body.model_dump(by_alias=True, exclude={"agent", "session_id", "gateway", "chat_id"})
        )
        schedule = request_only.build(
            agent.name, destination=destination, created_by="http", now=scheduler.clock()
        )
    except ValueError as exc:
        raise _refused_by_the_schedule(str(exc)) from None
    if schedule.until_process is not None:
        _check_process(request, schedule.until_process, agent.name)
    with changes_by_person():  # a client's request, never the agent's: committed as the person's
        schedule = await scheduler.create(schedule)
    return json_reply(_out(scheduler, schedule), 201)


def _check_gateway(configured: list[ExternalGatewayConfig], gateway: str) -> None:
    """`gateway` must be one this server runs: a run for another would land in a session no chat
    follows, and be recorded as delivered."""
    names = [spec.name for spec in configured]
    if gateway not in names:
        known = f"configured: {', '.join(names)}" if names else "none is configured"
        raise _refused("body.gateway", f"no gateway {gateway!r} on this server ({known})")


def _refused(field: str, message: str) -> HttpProblem:
    """A 400 naming `field`, its detail `<field>: <message>`."""
    return HttpProblem(400, f"{field}: {message}", (FieldError(field, message),), "validation")


def _refused_by_the_schedule(message: str) -> HttpProblem:
    """A 400 for what the schedule's own checks refused (`cron: invalid cron expression ...`), at
    the body field the message starts with; at `body` when it names none (`give exactly one of
    at, every or cron`)."""
    name, sep, rest = message.partition(": ")
    fields = {field.alias or key for key, field in CreateSchedule.model_fields.items()}
    error = FieldError(f"body.{name}", rest) if sep and name in fields else FieldError("body", message)
    return HttpProblem(400, message, (error,), "validation")


def _check_process(request: web.Request, handle: str, agent: str) -> None:
    """`until_process` must name a running process of the schedule's agent (404 or 400 otherwise)."""
    from duragent.processes.record import check_followable

    processes = request.app[STATE].processes
    if processes is None:
        raise HttpProblem(503, "background processes are not available yet (the server is starting)")
    try:
        check_followable(processes.get(handle), agent)
    except NotFound as exc:
        message = f"{exc} of agent {agent}"
        raise HttpProblem(
            404, f"body.until_process: {message}", (FieldError("body.until_process", message),)
        ) from None
    except UsageError as exc:
        raise _refused("body.until_process", str(exc)) from None


@documented("One schedule and its recent runs.", responses={200: ScheduleOut, 404: ProblemOut})
async def get_schedule(request: web.Request) -> web.Response:
    """GET /api/v1/schedules/{id}."""
    scheduler = _scheduler(request)
    schedule_id = request.match_info["schedule_id"]
    schedule = await scheduler.get(schedule_id)
    runs = [run.to_json() for run in await scheduler.runs(schedule_id)]
    return json_reply(_out(scheduler, schedule, runs))


@documented("Delete a schedule and its run history.", responses={204: None, 404: ProblemOut})
async def delete_schedule(request: web.Request) -> web.Response:
    """DELETE /api/v1/schedules/{id} -> 204."""
    with changes_by_person():
        await _scheduler(request).remove(request.match_info["schedule_id"])
    return web.Response(status=204)


@documented(
    "Run a schedule once now; answers when the run is over.", responses={200: RunOut, 404: ProblemOut}
)
async def run_schedule(request: web.Request) -> web.Response:
    """POST /api/v1/schedules/{id}/run."""
    record = await _scheduler(request).run_now(request.match_info["schedule_id"])
    return json_reply(RunOut(run=record.to_json()))


@documented("Stop a schedule firing until resumed.", responses={200: ScheduleOut, 404: ProblemOut})
async def pause_schedule(request: web.Request) -> web.Response:
    """POST /api/v1/schedules/{id}/pause."""
    scheduler = _scheduler(request)
    with changes_by_person():
        paused = await scheduler.pause(request.match_info["schedule_id"])
    return json_reply(_out(scheduler, paused))


@documented("Fire a paused schedule again from its next slot.", responses={200: ScheduleOut, 404: ProblemOut})
async def resume_schedule(request: web.Request) -> web.Response:
    """POST /api/v1/schedules/{id}/resume."""
    scheduler = _scheduler(request)
    with changes_by_person():
        resumed = await scheduler.resume(request.match_info["schedule_id"])
    return json_reply(_out(scheduler, resumed))


class AdminScheduleOut(ScheduleOut):
    """A schedule as an operator sees it: with its last run."""

    last_run: dict[str, Any] | None = None


class AdminScheduleList(Reply):
    """GET /api/admin/v1/schedules: every schedule, and each schedule file that does not load."""

    schedules: list[AdminScheduleOut]
    problems: list[str]


@documented(
    "Every schedule of every agent (finished ones too) with its last run, and the files that do "
    "not load (file:line and what is wrong); reads the store again first.",
    responses={200: AdminScheduleList},
)
async def admin_list_schedules(request: web.Request) -> web.Response:
    """GET /api/admin/v1/schedules."""
    scheduler = _scheduler(request)
    listing = await scheduler.reload()
    rows = []
    for schedule in await scheduler.list_schedules(include_finished=True):
        last = await scheduler.store.runs(schedule.id, limit=1)
        row = AdminScheduleOut(
            **_out(scheduler, schedule).model_dump(), last_run=last[-1].to_json() if last else None
        )
        rows.append(row)
    return json_reply(AdminScheduleList(schedules=rows, problems=[str(p) for p in listing.problems]))
