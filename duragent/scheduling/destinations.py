"""Load-time checks of where schedules deliver: a destination session of another agent.

A run never lands in another agent's session: delivery refuses it and pauses the schedule. A
schedule file edited to point there loads fine, though, so without this check the first a
person heard of it was a paused schedule. It is reported with the other problems of loading
(`duragent schedule list`, the admin API, the dashboard, the server log), with what to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from duragent.errors import ConfigError, DuragentError, InvalidName, Location, Problem
from duragent.scheduling.spec import FINISHED, Schedule
from duragent.scheduling.store import FileScheduleStore, ScheduleStore
from duragent.stores.base import SessionNotFound, SessionReadOptions, SessionStore
from duragent.yaml_source import load_yaml_text


async def misdirected_schedules(
    schedules: Iterable[Schedule],
    store: ScheduleStore,
    sessions: SessionStore,
    owners: dict[str, str] | None = None,
) -> list[Problem]:
    """A problem for each schedule whose `destination.session_id` is another agent's session.

    `owners` (session id -> agent) is kept across calls by a caller that checks again and again:
    a session never changes agent, so each is read once.
    """
    owners = {} if owners is None else owners
    problems: list[Problem] = []
    for schedule in schedules:
        destination = schedule.destination
        # (a chat's destination is the chat's current session, found at run time)
        if destination.session_id is None or destination.gateway is not None or schedule.status in FINISHED:
            continue
        try:
            owner = owners.get(destination.session_id) or await _agent_of(sessions, destination.session_id)
        except InvalidName as error:
            # a hand edit: the run would fail on it too, and one such file must not keep the
            # others from loading
            message = f"destination.session_id: {error}; name one of {schedule.agent}'s sessions or remove it"
            problems.append(Problem(message, await asyncio.to_thread(_where, store, schedule)))
            continue
        except DuragentError:
            continue  # (the store cannot tell now: the run finds out)
        if owner is None:
            continue
        owners[destination.session_id] = owner
        if owner == schedule.agent:
            continue
        message = (
            f"destination.session_id: session {destination.session_id} is agent {owner}'s, not "
            f"{schedule.agent}'s: the schedule will be paused at its first run (a schedule runs only "
            f"in its own agent's sessions); remove `session_id` to have a new session of "
            f"{schedule.agent}'s made at the first run, or name one of {schedule.agent}'s sessions"
        )
        problems.append(Problem(message, await asyncio.to_thread(_where, store, schedule)))
    return problems


async def _agent_of(sessions: SessionStore, session_id: str) -> str | None:
    """The agent a stored session belongs to; None when there is no such session (yet)."""
    snapshot = await sessions.load_snapshot(session_id)
    if snapshot is not None:
        return snapshot.agent
    try:
        first = await sessions.read(session_id, SessionReadOptions(limit=1))
    except SessionNotFound:
        return None
    if not first or first[0].type != "session_start":
        return None
    agent = first[0].payload.get("agent")
    return str(agent) if agent else None


def _where(store: ScheduleStore, schedule: Schedule) -> Location:
    """The `session_id:` line of the schedule's file (a row of the database names the schedule)."""
    if not isinstance(store, FileScheduleStore):
        return Location(f"schedule {schedule.id}")
    path = store.path_of(schedule.id)
    try:
        document = load_yaml_text(path.read_text(encoding="utf-8"), str(path), {}, interpolate=False)
    except (OSError, UnicodeDecodeError, ConfigError):
        return Location(str(path))  # (changed since it was loaded)
    return document.locate(("destination", "session_id"))
