"""Stateless conversations: one turn over a conversation the caller supplies, stored nowhere.

OpenAI-style clients (`POST /v1/chat/completions` without a session) send the whole
conversation with every request. Such a turn runs as an ordinary `LiveSession` (same runtime,
tools, policy, memory and streaming) whose log lives in memory only: its events are gone
when the request ends, and nothing is written to `sessions/` or committed. Memory the agent
writes through its tools is kept, as in any session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from duragent.ids import new_id
from duragent.sessions.log import SessionLog
from duragent.sessions.state import SessionState
from duragent.stores.base import (
    ListKey,
    SequenceConflict,
    SessionEvent,
    SessionNotFound,
    SessionReadOptions,
    SessionSnapshot,
    SessionSummary,
    already_durable,
)

#: Prefix of the ids of stateless conversations (tools and logs see them as session ids).
STATELESS_PREFIX = "oai"


class InMemorySessionStore:
    """A `SessionStore` whose logs live in this object only: for conversations nobody keeps."""

    def __init__(self) -> None:
        self._events: dict[str, list[SessionEvent]] = {}
        self._snapshots: dict[str, SessionSnapshot] = {}

    async def append(self, session_id: str, events: SessionEvent | Sequence[SessionEvent]) -> None:
        """Append after the last event (SequenceConflict when the seqs do not follow on)."""
        batch = [events] if isinstance(events, SessionEvent) else list(events)
        stored = self._events.setdefault(session_id, [])
        expected = (stored[-1].seq if stored else 0) + 1
        for offset, event in enumerate(batch):
            if event.seq != expected + offset:
                raise SequenceConflict(session_id, expected + offset, event.seq)
        stored.extend(batch)

    async def append_unsynced(
        self, session_id: str, events: SessionEvent | Sequence[SessionEvent]
    ) -> asyncio.Future[None]:
        """`append` (nothing here is ever more durable than memory: the future is done)."""
        await self.append(session_id, events)
        return already_durable()

    async def read(
        self, session_id: str, options: SessionReadOptions = SessionReadOptions()
    ) -> list[SessionEvent]:
        """The events after `options.after_seq` of `options.types`, at most `options.limit`."""
        if session_id not in self._events:
            raise SessionNotFound(session_id)
        found = [
            e
            for e in self._events[session_id]
            if e.seq > options.after_seq and (options.types is None or e.type in options.types)
        ]
        return found[: options.limit] if options.limit is not None else found

    async def delete(self, session_id: str) -> None:
        """Forget the session."""
        if self._events.pop(session_id, None) is None:
            raise SessionNotFound(session_id)
        self._snapshots.pop(session_id, None)

    async def last_seq(self, session_id: str) -> int:
        """The last seq appended (0 for none)."""
        stored = self._events.get(session_id)
        return stored[-1].seq if stored else 0

    async def list(
        self,
        *,
        agent: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        after: ListKey | None = None,
    ) -> list[SessionSummary]:
        """Nothing: stateless conversations are never listed among sessions."""
        return []

    async def save_snapshot(self, snapshot: SessionSnapshot) -> None:
        """Keep the latest snapshot (in memory)."""
        self._snapshots[snapshot.session_id] = snapshot

    async def load_snapshot(self, session_id: str) -> SessionSnapshot | None:
        """The latest snapshot, if any."""
        return self._snapshots.get(session_id)

    async def release(self, session_id: str) -> None:
        """A released conversation is over: forget it."""
        self._events.pop(session_id, None)
        self._snapshots.pop(session_id, None)

    async def close(self) -> None:
        """Forget everything."""
        self._events.clear()
        self._snapshots.clear()


def stateless_log(
    store: InMemorySessionStore, agent: str, history: Sequence[dict[str, Any]], *, snapshot_every: int = 20
) -> SessionLog:
    """A session log for `agent` that starts with `history` (conversation entries) already in it.

    `history` uses the stored conversation's shape (`{"role", "content", "tool_calls"?,
    "tool_call_id"?}`); leading `system` entries reach the model after the agent's own prompt.
    """
    state = SessionState(session_id=new_id(STATELESS_PREFIX), agent=agent)
    state.conversation = [dict(entry) for entry in history]
    state.turns = sum(1 for entry in history if entry.get("role") == "user")
    if history:
        # The client's history is what was said: one ending in tool results (or in a user
        # message before the new one) owes no reply of its own, only the new message does.
        state.turn_closed_by = "history"
    return SessionLog(store, state, snapshot_every=snapshot_every)
