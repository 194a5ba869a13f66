"""`duragent schedule ...`: list, show, add, rm, run, pause and resume schedules.

Everything but `run` works on the schedule files (or PostgreSQL rows) directly, with or without
a server: a running server picks the change up (it looks at the folder every second). `run` asks the server,
starting one for the workspace if none runs, since a run happens inside a session.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from duragent.cli.context import CliState, check_agent_exists, print_json, print_table, run_async

#: Schedule ids in the problems of files that do not parse (their paths name them).
_ID_IN_TEXT = re.compile(r"sch_[A-Za-z0-9]+")

if TYPE_CHECKING:
    from duragent.scheduling.spec import Schedule
    from duragent.scheduling.store import ScheduleStore
    from duragent.workspace import Workspace

app = typer.Typer(help="Schedules: work that runs later, once or again and again.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Add the `schedule` command group."""
    root.add_typer(app, name="schedule")


async def _with_store(ctx: typer.Context, action: Any) -> Any:
    """Run `action` on the workspace's schedule store; what it changed is committed, as the
    person's, before this returns."""
    from duragent.scheduling.store import open_schedule_store
    from duragent.stores.base import changes_by_person
    from duragent.workspace import Workspace

    state: CliState = ctx.obj
    async with Workspace(state.config()) as workspace:
        store = open_schedule_store(workspace.config, on_change=workspace.record_change)
        # (the committer starts first: what an earlier run left uncommitted is queued as the agent's)
        _ = workspace.committer
        try:
            with changes_by_person():
                return await action(store)
        finally:
            await store.close()


async def _load_checked(ctx: typer.Context) -> Any:
    """Every schedule and the problems of loading them, a destination of another agent's too."""
    from duragent.scheduling.destinations import misdirected_schedules
    from duragent.scheduling.store import Listing, open_schedule_store
    from duragent.workspace import Workspace

    state: CliState = ctx.obj
    async with Workspace(state.config()) as workspace:
        store = open_schedule_store(workspace.config)
        try:
            listing = await store.load_all()
            misdirected = await misdirected_schedules(listing.schedules, store, workspace.stores.sessions)
        finally:
            await store.close()
    return Listing(listing.schedules, [*listing.problems, *misdirected])


def _next_slot(schedule: Schedule) -> datetime | None:
    from duragent.scheduling.spec import next_slot
    from duragent.stores.base import utcnow

    return next_slot(schedule, utcnow()) if schedule.status == "active" else None


def _next_run(schedule: Schedule) -> str:
    """The next run for JSON: RFC 3339 in UTC."""
    from duragent.scheduling.spec import format_time

    slot = _next_slot(schedule)
    if slot is None:
        return "-" if schedule.status != "active" else "due"
    return format_time(slot)


def _next_run_text(schedule: Schedule) -> str:
    """The next run for people, in their time zone like every other time printed."""
    slot = _next_slot(schedule)
    if slot is None:
        return "-" if schedule.status != "active" else "due"
    return _local(slot)


def _timing_text(schedule: Schedule) -> str:
    """`Schedule.timing_text` with a one-off time in the person's time zone, as NEXT RUN is."""
    return f"at {_local(schedule.at)}" if schedule.at is not None else schedule.timing_text()


def _local(value: datetime) -> str:
    # the zone is named: a time without it is read wrong by whoever is not in the server's zone
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


@app.command("list")
def list_schedules(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Only this agent's schedules.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Also completed and cancelled ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Schedules, oldest first, with their next run."""

    listing = run_async(_load_checked(ctx))
    for problem in listing.problems:
        typer.echo(f"warning: {problem}", err=True)
    if agent is not None and not any(s.agent == agent for s in listing.schedules):
        check_agent_exists(ctx.obj, agent, "schedules")  # (a typo listed "No schedules.")
    schedules = [
        s
        for s in listing.schedules
        if (agent is None or s.agent == agent) and (show_all or s.status in ("active", "paused"))
    ]
    if as_json:
        print_json([{**s.to_document(), "next_run": _next_run(s)} for s in schedules])
        return
    if not schedules:
        # (a one-shot that ran is completed, not gone: say where it is, or it looks lost)
        hidden = sum(1 for s in listing.schedules if agent is None or s.agent == agent)
        print(
            f"No active schedules ({hidden} completed or cancelled: --all lists them)."
            if hidden
            else "No schedules."
        )
        return
    rows = [
        [s.id, s.agent, s.status, _timing_text(s), s.payload_kind, _next_run_text(s), s.label or ""]
        for s in schedules
    ]
    print_table(["SCHEDULE", "AGENT", "STATUS", "TIMING", "PAYLOAD", "NEXT RUN", "LABEL"], rows)


@app.command("show")
def show_schedule(
    ctx: typer.Context,
    schedule_id: Annotated[str, typer.Argument(help="Schedule id (sch_...), or a unique start of it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One schedule: its document, next run and recent runs."""

    async def load(store: ScheduleStore) -> Any:
        found = await _resolved(store, schedule_id)
        return await store.get(found), await store.runs(found)

    schedule, runs = run_async(_with_store(ctx, load))
    if as_json:
        print_json(
            {**schedule.to_document(), "next_run": _next_run(schedule), "runs": [r.to_json() for r in runs]}
        )
        return
    print(f"schedule  {schedule.id}{f'  ({schedule.label})' if schedule.label else ''}")
    print(f"agent     {schedule.agent}")
    print(f"status    {schedule.status}")
    print(f"timing    {_timing_text(schedule)}")
    print(f"{schedule.payload_kind:<9} {schedule.payload_text}")
    destination = schedule.destination
    where = destination.session_id or "a new session at first run"
    if destination.gateway:
        where += f" (chat {destination.chat_id} on {destination.gateway})"
    print(f"delivers  to {where}")
    print(f"next run  {_next_run_text(schedule)}")
    if schedule.until_process:
        print(f"until     background process {schedule.until_process} ends")
    print(f"created   {_local(schedule.created_at)} by {schedule.created_by or 'unknown'}")
    for run in runs:
        detail = f" ({run.error})" if run.error else ""
        print(f"run       {_local(run.ts)}  {run.status}{detail}")


@app.command("add")
def add_schedule(
    ctx: typer.Context,
    agent: Annotated[
        str | None,
        typer.Option("--agent", "-a", help="The agent that runs it (default: --session's, or the only one)."),
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help="Once, at this RFC 3339 time.")] = None,
    after: Annotated[str | None, typer.Option("--in", help="Once, after this long (20m, 2h).")] = None,
    every: Annotated[str | None, typer.Option("--every", help="Again and again, this often (1h).")] = None,
    cron: Annotated[str | None, typer.Option("--cron", help="Cron expression ('0 9 * * MON-FRI').")] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="Time zone of --cron.")] = None,
    message: Annotated[str | None, typer.Option("--message", help="Deliver this text as is.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Have the agent do this in a turn.")] = None,
    label: Annotated[str | None, typer.Option("--label", help="A short name for lists.")] = None,
    session: Annotated[str | None, typer.Option("--session", help="Deliver into this session.")] = None,
    retries: Annotated[
        int | None, typer.Option("--retries", help="Retry a failed run this many times.")
    ] = None,
    until_process: Annotated[
        str | None,
        typer.Option("--until-process", help="Cancel it when this background process (proc_...) ends."),
    ] = None,
) -> None:
    """Create a schedule (exactly one of --at/--in/--every/--cron, and --message or --task)."""
    from pydantic import ValidationError

    from duragent.errors import NotFound, UsageError
    from duragent.scheduling.spec import Destination, ScheduleRequest, describe_validation, format_time
    from duragent.stores.base import utcnow
    from duragent.workspace import Workspace

    state: CliState = ctx.obj
    workspace = Workspace(state.config())
    session_id: str | None = None
    known = _agent_names(workspace)
    if agent is not None and agent not in known:
        raise UsageError(f"--agent: no agent {agent!r} in {workspace.config.agents_path}")
    if session is not None:
        # as over HTTP: a mistyped session would not be noticed until the first run made another
        session_id, agent = run_async(_session_of(workspace, session, agent))
        if agent not in known:
            raise UsageError(f"--session: session {session_id}'s agent {agent!r} has no folder any more")
    elif agent is None:
        agent = _the_only_agent(known)
    fields: dict[str, object] = {"at": at, "in": after, "every": every, "cron": cron, "timezone": timezone}
    fields |= {"message": message, "task": task, "label": label, "max_retries": retries}
    fields["until_process"] = until_process
    now = utcnow()
    try:
        request = ScheduleRequest.model_validate({k: v for k, v in fields.items() if v is not None})
        schedule = request.build(
            agent, destination=Destination(session_id=session_id), created_by="cli", now=now
        )
    except ValidationError as exc:
        if at is not None and any(_not_a_time(error) for error in exc.errors(include_url=False)):
            raise UsageError(
                f"--at {at!r} is not a time: give one with its zone, e.g. 2026-12-08T09:00:00+01:00 or "
                "2026-12-08T08:00:00Z, or --in 20m for a time from now"
            ) from None
        raise UsageError(_option_names(describe_validation(exc))) from None
    except ValueError as exc:
        raise UsageError(_option_names(str(exc))) from None
    if schedule.at is not None and schedule.at <= now:
        raise UsageError(f"--at {format_time(schedule.at)} is in the past")
    if until_process is not None:
        from duragent.processes.record import check_followable, read_stored

        try:
            check_followable(read_stored(workspace.config.data_path / "processes", until_process), agent)
        except NotFound as exc:
            raise NotFound(f"--until-process: {exc} of agent {agent}") from None
        except UsageError as exc:
            raise UsageError(f"--until-process: {exc}") from None

    async def save(store: ScheduleStore) -> None:
        await store.put(schedule, f"created ({schedule.timing_text()}, {schedule.payload_kind})")

    run_async(_with_store(ctx, save))
    print(f"created {schedule.id}: {_timing_text(schedule)}, next run {_next_run_text(schedule)}")


async def _resolved(store: ScheduleStore, text: str) -> str:
    """The schedule `text` names: its id, or a unique start of it (`sch_01M98JW0WF`, as commit
    messages and lists cut it), like a session's."""
    from duragent.ids import resolve_prefix

    listing = await store.load_all()
    # a schedule whose file does not parse is a candidate too: a start it shares with another
    # must not pick the other one without a word (and `rm` remove it)
    broken = (found for problem in listing.problems for found in _ID_IN_TEXT.findall(str(problem)))
    return resolve_prefix(text, [*(schedule.id for schedule in listing.schedules), *broken], "schedule")


def _not_a_time(error: Any) -> bool:
    """Whether a validation error of `--at` is pydantic's own parse failure (its words: "input is
    too short"), not one of ours (a missing zone, a time in the past)."""
    return tuple(error["loc"])[:1] == ("at",) and str(error["type"]).startswith(("datetime_", "date_"))


def _agent_names(workspace: Workspace) -> list[str]:
    """The agents a schedule may be for: the agents folder's and those deployed over the admin
    API (each a folder with an agent.yaml), as the server finds them."""
    from duragent.agents.loader import discover_agents

    config = workspace.config
    folders = (config.agents_path, config.dynamic_agents_path)
    return sorted({found.name for folder in folders for found in discover_agents(folder)})


def _the_only_agent(known: list[str]) -> str:
    """The agent a schedule made without --agent (or --session) is for: the only one there is, as
    `send` picks it."""
    from duragent.errors import UsageError

    if len(known) == 1:
        return known[0]
    if not known:
        raise UsageError("this workspace has no agents; create one with `duragent agent create NAME`")
    raise UsageError(f"there are several agents ({', '.join(known)}); pick one with --agent NAME")


async def _session_of(workspace: Workspace, text: str, agent: str | None) -> tuple[str, str]:
    """The session `--session` names (its id, its name or a unique start of its id) and its agent,
    which must be `agent` when one is given."""
    from duragent.errors import NotFound, UsageError
    from duragent.ids import resolve_session

    async with workspace:
        listed = await workspace.stores.sessions.list()
    session_id = resolve_session(text, ((s.session_id, s.name) for s in listed))
    found = next((s for s in listed if s.session_id == session_id), None)
    if found is None:
        raise NotFound(f"--session: no session {text!r} (see `duragent session list`)")
    if agent is not None and found.agent != agent:
        raise UsageError(f"--session: session {session_id} is agent {found.agent}'s, not {agent}'s")
    return session_id, found.agent


def _option_names(message: str) -> str:
    """Field names of a validation message as the options a person typed."""
    for name in ("at", "in", "every", "cron", "timezone", "message", "task", "label"):
        message = message.replace(f"{name}: ", f"--{name}: ")
    return message.replace("max_retries", "--retries").replace("until_process: ", "--until-process: ")


@app.command("rm")
def remove_schedule(
    ctx: typer.Context,
    schedule_id: Annotated[str, typer.Argument(help="Schedule id (sch_...), or a unique start of it.")],
) -> None:
    """Delete a schedule and its run history (git keeps the file's history)."""

    async def remove(store: ScheduleStore) -> str:
        found = await _resolved(store, schedule_id)
        await store.delete(found)
        return found

    print(f"removed {run_async(_with_store(ctx, remove))}")


def _set_status(ctx: typer.Context, schedule_id: str, status: str) -> None:
    from duragent.errors import UsageError
    from duragent.scheduling.spec import FINISHED

    def with_status(current: Schedule) -> Schedule:
        if current.status in FINISHED:
            raise UsageError(f"schedule {current.id} is {current.status}")
        return current.model_copy(update={"status": status})

    async def change(store: ScheduleStore) -> Schedule:
        found = await _resolved(store, schedule_id)
        # (the schedule as stored when it is written: a run's session recorded meanwhile is kept)
        return await store.update(found, with_status, "paused" if status == "paused" else "resumed")

    changed = run_async(_with_store(ctx, change))
    print(f"{changed.id} is {changed.status}; next run {_next_run_text(changed)}")


@app.command("pause")
def pause_schedule(
    ctx: typer.Context,
    schedule_id: Annotated[str, typer.Argument(help="Schedule id (sch_...), or a unique start of it.")],
) -> None:
    """Stop a schedule firing until it is resumed."""
    _set_status(ctx, schedule_id, "paused")


@app.command("resume")
def resume_schedule(
    ctx: typer.Context,
    schedule_id: Annotated[str, typer.Argument(help="Schedule id (sch_...), or a unique start of it.")],
) -> None:
    """Fire a paused schedule again, from its next slot."""
    _set_status(ctx, schedule_id, "active")


@app.command("run")
def run_schedule(
    ctx: typer.Context,
    schedule_id: Annotated[str, typer.Argument(help="Schedule id (sch_...), or a unique start of it.")],
    server: Annotated[
        str | None, typer.Option("--server", help="Server URL (default: this workspace's).")
    ] = None,
) -> None:
    """Run a schedule once now, in the server (started if none runs); prints how the run went."""
    from duragent.cli.chat import announce
    from duragent.client.http import ApiClient, api_token
    from duragent.client.launcher import connect, workspace_of

    state: CliState = ctx.obj
    config = state.config()
    token = api_token(config)

    async def existing(store: ScheduleStore) -> str:
        found = await _resolved(store, schedule_id)
        await store.get(found)  # one this workspace lacks, its server lacks too: said before starting it
        return found

    # (an id for another server is sent as it is: its schedules are not this workspace's)
    found = run_async(_with_store(ctx, existing)) if server is None else schedule_id

    async def run() -> dict[str, Any]:
        connection = await asyncio.to_thread(connect, workspace_of(config), server_url=server)
        announce(connection)  # a server started or restarted for the run is said, as `send` does
        async with ApiClient(connection.url, token=token) as client:
            _status, body = await client.request("POST", f"/api/v1/schedules/{found}/run", time_limit=None)
            return body

    record = run_async(run())["run"]
    detail = f": {record['error']}" if record.get("error") else ""
    print(f"{found}: {record['status']} after {record.get('attempts', 1)} attempt(s){detail}")
    if record["status"] != "ok":
        raise typer.Exit(1)
