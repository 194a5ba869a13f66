"""Read-only views of stored sessions for people: `session show` and `session log --follow`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from duragent.sessions.state import SessionState, replay
from duragent.stores.base import SessionEvent, SessionNotFound, SessionReadOptions, SessionStore


class SessionInfo(SessionState):
    """A session's state, as `session show` presents it."""

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
    return info


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
