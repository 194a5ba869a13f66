"""Carrying out a run in its destination session: a message delivered as is, or a task as a turn.

The destination is the session that made the schedule. When that session belongs to a chat
(Telegram, ...) the chat's current session is used (a `/reset` starts a new one) and followed,
so the message, the task's reply and any approval the task needs reach the chat: approvals are
asked there with buttons, and of every client attached to the session, like any other turn's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from duragent.agents.catalog import AgentNotFound
from duragent.errors import DuragentError, NotFound
from duragent.scheduling.service import DeliveryFailed, current_run_place
from duragent.scheduling.spec import TASK_MARKER, Schedule
from duragent.sessions.live import LiveSession, SessionEnded
from duragent.sessions.manager import SessionManager
from duragent.sessions.stream import APPROVAL_PAUSE_REASON
from duragent.stores.base import SessionEvent, SessionLocked

#: How long a run waits for this worker to reconnect to PostgreSQL (its session locks lost in a
#: database restart or a network blip) before it counts as failed.
RECONNECT_WAIT = 60.0
#: How long a run waits for another worker to let its destination session go (the turn running
#: there to end) before it counts as failed.
OWNER_WAIT = 600.0
#: Pause between two asks (each of which already waits a moment for the owner).
RETRY_PAUSE = 0.2

#: Finds (creating and following it if needed) a chat's session: (gateway, chat id, agent).
ChatSession = Callable[[str, str, str], Awaitable[LiveSession]]


def task_message(schedule: Schedule) -> str:
    """What the agent reads when a scheduled task starts its turn."""
    title = TASK_MARKER.format(id=schedule.id) + (f" {schedule.label}" if schedule.label else "")
    return (
        f"{title}\n{schedule.task}\n\n"
        "(Started by a schedule, not typed by the user just now; your reply is delivered to them.)"
    )


class SessionDelivery:
    """Delivers runs through the session manager (and the gateway router for chats)."""

    def __init__(self, sessions: SessionManager, chat_session: ChatSession | None = None):
        self.sessions = sessions
        self.chat_session = chat_session

    async def __call__(self, schedule: Schedule, slot: datetime) -> str:
        """Deliver one run; DeliveryFailed says what went wrong (and whether a retry may help)."""
        del slot
        try:
            live = await self._reach(schedule)
        except AgentNotFound:
            # (its folder deleted or renamed): no later slot can run either
            raise DeliveryFailed(f"agent {schedule.agent!r} no longer exists", pause=True) from None
        except DeliveryFailed:
            raise
        except DuragentError as exc:
            raise DeliveryFailed(f"cannot reach the destination session: {exc}") from None
        if schedule.message is not None:
            await live.log.append(
                "notification",
                {"message": schedule.message, "schedule_id": schedule.id, "source": "schedule"},
            )
            return live.session_id
        await run_task(live, schedule)
        return live.session_id

    async def _reach(self, schedule: Schedule) -> LiveSession:
        """The destination, once this worker may run it. Scaled out, the run may be claimed by a
        worker that cannot run the session yet: one reconnecting to PostgreSQL waits to be back,
        and one whose session another worker keeps (a turn running there) asks it again and again
        to let the session go (each ask waits for the turn to end for a moment), as a run queued
        behind a turn on one server waits for it. Meanwhile it holds no place among the runs."""
        ownership = self.sessions.ownership
        if ownership is None:
            return await self._destination(schedule)
        deadline = time.monotonic() + OWNER_WAIT
        place = current_run_place.get()
        while True:
            if ownership.lost:
                await ownership.back(within=RECONNECT_WAIT)
            try:
                live = await self._destination(schedule)
                break
            except SessionLocked:  # (OwnershipLost too: this worker lost its locks meanwhile)
                if time.monotonic() > deadline:
                    raise
                if place is not None:
                    place.give_back()
                await asyncio.sleep(RETRY_PAUSE)
        if place is not None:
            await place.take()
        return live

    async def _destination(self, schedule: Schedule) -> LiveSession:
        destination = schedule.destination
        if destination.gateway is not None and destination.chat_id is not None and self.chat_session:
            return await self.chat_session(destination.gateway, destination.chat_id, schedule.agent)
        if destination.session_id is not None:
            try:
                live = await self.sessions.get(destination.session_id)
            except NotFound:
                live = None
            if live is not None and live.log.state.agent != schedule.agent:
                # (a hand-edited file): never delivered into another agent's session, nor retried
                raise DeliveryFailed(
                    f"destination.session_id: session {destination.session_id} belongs to agent "
                    f"{live.log.state.agent!r}, not {schedule.agent!r}: a schedule runs only in its "
                    "own agent's sessions",
                    pause=True,
                )
            if live is not None and live.status != "ended":
                return live
        metadata: dict[str, Any] = {"schedule_id": schedule.id}
        if destination.gateway is not None:
            metadata.update(gateway=destination.gateway, chat_id=destination.chat_id)
        return await self.sessions.create(schedule.agent, metadata=metadata)


async def run_task(live: LiveSession, schedule: Schedule) -> None:
    """Queue the task as a turn of `live` and wait until that turn ends; DeliveryFailed if it failed."""
    seen: list[SessionEvent] = []
    arrived = asyncio.Event()

    def listen(events: list[SessionEvent]) -> None:
        seen.extend(events)
        arrived.set()

    live.log.listeners.append(listen)
    place = current_run_place.get()
    try:
        try:
            ticket = await live.queue(
                task_message(schedule), {"id": f"schedule:{schedule.id}", "name": "schedule"}
            )
            if place is not None and ticket.ahead:
                # queued behind another turn (one waiting for a person's approval, perhaps for
                # hours): waiting takes no place among the runs in progress
                place.give_back()
            start = await ticket.started
        except (asyncio.CancelledError, SessionEnded) as exc:
            if isinstance(exc, asyncio.CancelledError) and _cancelling():
                raise
            raise DeliveryFailed(
                "the session ended before the task started", session_id=live.session_id
            ) from None
        if place is not None:
            await place.take()
        while True:
            while seen:  # (taken one by one: more arrive while a place is awaited)
                event = seen.pop(0)
                if event.seq > start.seq:
                    _check_end(event, live.session_id)
                    if place is not None and event.type == "status_change":
                        # waiting for a person takes no place among the runs in progress
                        if event.payload.get("reason") == APPROVAL_PAUSE_REASON:
                            place.give_back()
                        elif event.payload.get("to") in ("active", "running"):
                            await place.take()
            arrived.clear()
            await arrived.wait()
    except _TurnOver:
        return
    finally:
        live.log.listeners.remove(listen)


class _TurnOver(Exception):
    """The task's turn finished well."""


def _check_end(event: SessionEvent, session_id: str) -> None:
    """Raise _TurnOver or DeliveryFailed when `event` ends the task's turn."""
    payload = event.payload
    if event.type == "assistant_message" and not payload.get("tool_calls") and not payload.get("partial"):
        raise _TurnOver
    if event.type == "error":
        raise DeliveryFailed(
            f"the task failed: {payload.get('message', 'unknown error')}", session_id=session_id
        )
    if event.type == "cancelled":
        raise DeliveryFailed("the task's turn was cancelled", retry=False, session_id=session_id)
    if event.type == "session_end":
        raise DeliveryFailed("the session ended during the task", retry=False, session_id=session_id)
    if event.type == "status_change" and payload.get("to") == "paused":
        reason = str(payload.get("reason") or "")
        if reason != APPROVAL_PAUSE_REASON:
            raise DeliveryFailed(f"the task's turn paused: {reason}", retry=False, session_id=session_id)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
