"""Read-only views of stored sessions for people: `session show` and `session log --follow`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from duragent.sessions.state import SessionState, replay
from duragent.stores.base import SessionEvent, SessionNotFound, SessionReadOptions, SessionStore


class SessionInfo(SessionState):
    """A session's state, as `session show` presents it.

    `unattended_since` is when a running session last went on without any client (the moment
    its `max_background_runtime` clock started), None unless its status is `running`.
    """

    unattended_since: datetime | None = None

    def unattended(self, limit: timedelta, now: datetime) -> dict[str, Any] | None:
        """How long the session has run unattended and when it will be paused (None unless running).

        `pauses_at` is None when `limit` is zero (no limit).
        """
        if self.status != "running" or self.unattended_since is None:
            return None
        report: dict[str, Any] = {
            "unattended_since": self.unattended_since.isoformat(),
            "unattended_seconds": max(int((now - self.unattended_since).total_seconds()), 0),
            "max_background_runtime_seconds": int(limit.total_seconds()),
            "pauses_at": (self.unattended_since + limit).isoformat() if limit > timedelta(0) else None,
        }
        return report

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
            "metadata": self.metadata,
        }


async def inspect_session(store: SessionStore, session_id: str) -> SessionInfo:
    """Replay the whole log (a person asked, so exact counts beat the snapshot's shortcut)."""
    events = await store.read(session_id)
    if not events:
        raise SessionNotFound(session_id)
    info = SessionInfo(session_id=session_id)
    replay(session_id, events, info)
    info.unattended_since = _unattended_since(events)
    return info


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
        events = await store.read(session_id, SessionReadOptions(after_seq=last))
