"""Read-only views of stored sessions for people: `session show` and `session log --follow`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

from duragent.errors import NotFound
from duragent.sessions.state import SessionState, replay
from duragent.stores.base import SessionEvent, SessionNotFound, SessionReadOptions, SessionStore


class SessionDeleted(SessionNotFound):
    """The session followed was deleted meanwhile (not a wrong id: it was there a moment ago)."""

    def __init__(self, session_id: str):
        NotFound.__init__(self, f"session {session_id} was deleted while it was followed")
        self.session_id = session_id


class SessionInfo(SessionState):
    """A session's state, as `session show` presents it.

    `unattended_since` is when a running session last went on without any client (the moment
    its `max_background_runtime` clock started), None unless its status is `running`.
    """

    unattended_since: datetime | None = None
    #: Why a paused session paused (its last status change), None unless its status is `paused`.
    pause_reason: str | None = None

    def unattended(self, limit: timedelta, now: datetime) -> dict[str, Any] | None:
        """How long the session has run unattended and when it will be paused (None unless running)."""
        return unattended_report(self.status, self.unattended_since, limit, now)

    def to_json(self) -> dict[str, Any]:
        """The JSON `session show --json` prints."""
        return {
            "session_id": self.session_id,
            "agent": self.agent,
            "status": self.status,
            "on_disconnect": self.on_disconnect,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "last_seq": self.last_seq,
            "turns": self.turns,
            "event_counts": self.event_counts,
            "usage": self.usage,
            "pending_approvals": self.pending_approvals,
            "pause_reason": self.pause_reason,
            "queued": [
                {"queue_id": q.get("queue_id"), "content": q.get("content"), "sender": q.get("sender")}
                for q in self.queued
            ],
            "metadata": self.metadata,
        }


def unattended_report(
    status: str, since: datetime | None, limit: timedelta, now: datetime
) -> dict[str, Any] | None:
    """How long a `running` session has gone on without a client since `since`, and when its
    `max_background_runtime` (`limit`) pauses it; None unless it is running unattended.

    `pauses_at` is None when `limit` is zero (no limit).
    """
    if status != "running" or since is None:
        return None
    return {
        # (with a `Z`, as every other time of the API)
        "unattended_since": since.isoformat().replace("+00:00", "Z"),
        "unattended_seconds": max(int((now - since).total_seconds()), 0),
        "max_background_runtime_seconds": int(limit.total_seconds()),
        "pauses_at": (since + limit).isoformat().replace("+00:00", "Z") if limit > timedelta(0) else None,
    }


def describe_unattended(report: dict[str, Any], when: Callable[[datetime], str]) -> str:
    """`for 12m (since 10:02); will be paused at 10:32 (max_background_runtime 30m)`, times by `when`."""
    from duragent.durations import format_duration

    since = datetime.fromisoformat(report["unattended_since"])
    text = f"for {format_duration(timedelta(seconds=report['unattended_seconds']))} (since {when(since)})"
    if report["pauses_at"] is None:
        return text + "; never paused (max_background_runtime: 0)"
    limit = format_duration(timedelta(seconds=report["max_background_runtime_seconds"]))
    pauses_at = when(datetime.fromisoformat(report["pauses_at"]))
    return f"{text}; will be paused at {pauses_at} (max_background_runtime {limit})"


async def inspect_session(store: SessionStore, session_id: str) -> SessionInfo:
    """Replay the whole log (a person asked, so exact counts beat the snapshot's shortcut)."""
    events = await store.read(session_id)
    if not events:
        raise SessionNotFound(session_id)
    info = SessionInfo(session_id=session_id)
    replay(session_id, events, info)
    info.unattended_since = _unattended_since(events)
    info.pause_reason = _pause_reason(events) if info.status == "paused" else None
    return info


def _pause_reason(events: list[SessionEvent]) -> str | None:
    """The reason of the last status change to `paused`."""
    for event in reversed(events):
        if event.type == "status_change" and event.payload.get("to") == "paused":
            reason = event.payload.get("reason")
            return reason if isinstance(reason, str) else None
    return None


def _unattended_since(events: list[SessionEvent]) -> datetime | None:
    """When the session last became `running` (a turn with no client attached), if it still is."""
    since: datetime | None = None
    for event in events:
        if event.type == "status_change":
            since = event.ts if event.payload.get("to") == "running" else None
        elif event.type == "session_end":
            since = None
    return since


async def follow_events(
    store: SessionStore, session_id: str, *, follow: bool = False, poll_seconds: float = 0.25
) -> AsyncIterator[SessionEvent]:
    """Every event of the session, then (with `follow`) new ones as they are appended."""
    last = 0
    events = await store.read(session_id)
    if not events:
        raise SessionNotFound(session_id)
    while True:
        for event in events:
            yield event
            last = event.seq
            if event.type == "session_end":
                return
        if not follow:
            return
        await asyncio.sleep(poll_seconds)
        try:
            events = await store.read(session_id, SessionReadOptions(after_seq=last))
        except SessionNotFound:
            raise SessionDeleted(session_id) from None
