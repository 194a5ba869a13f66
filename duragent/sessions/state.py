"""A session's state folded from its events, and resume from snapshot + log tail.

`state.yaml` is only a cache of `SessionState`: `resume` loads it and replays the events
after its `last_seq`; when it is missing or unreadable the whole log is replayed instead, so
the log alone is always enough.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from duragent.stores.base import (
    SessionEvent,
    SessionNotFound,
    SessionReadOptions,
    SessionSnapshot,
    SessionStatus,
    SessionStore,
    utcnow,
)

log = logging.getLogger(__name__)


@dataclass
class SessionState:
    """Everything needed to continue a session: who, where it stands, and the conversation."""

    session_id: str
    agent: str = ""
    status: SessionStatus = "active"
    on_disconnect: str = "continue"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    last_seq: int = 0
    turns: int = 0
    conversation: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    #: Usage of the latest turn's model calls so far (a turn resumed after a restart keeps counting).
    turn_usage: dict[str, int] = field(default_factory=dict)
    pending_approvals: list[dict[str, Any]] = field(default_factory=list)
    #: Messages accepted while a turn ran (`message_queued`) whose turn has not started yet, oldest first.
    queued: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    #: "error" or "cancelled" when the latest turn ended that way (it is over: recovery never
    #: runs it again); None while it runs, after it answered, or when a stop or crash cut it off.
    turn_closed_by: str | None = None
    event_counts: dict[str, int] = field(default_factory=dict)
    #: Derived per-message data the context builder caches (the conversation only grows, but for
    #: the cut-off reply a retry leaves out: `forget_derived`).
    context_cache: list[Any] = field(default_factory=list, repr=False, compare=False)
    _tool_calls: _ToolCallIndex = field(
        default_factory=lambda: _ToolCallIndex(), init=False, repr=False, compare=False
    )

    def open_tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls of the conversation that have no result yet, oldest first.

        Asked before every model call: kept up to date from the new messages only, so the cost
        does not grow with the conversation.
        """
        self._tool_calls.update(self.conversation)
        return [call for _position, call in self._tool_calls.open]

    def open_calls_of_last_batch(self) -> list[dict[str, Any]]:
        """The calls without a result of the latest assistant message that called tools, in order."""
        self._tool_calls.update(self.conversation)
        position = self.last_batch_position()
        return [] if position is None else [call for at, call in self._tool_calls.open if at == position]

    def last_batch_position(self) -> int | None:
        """Where the latest assistant message that called tools stands in the conversation (None:
        no message called any). With a call id it names one call: ids repeat from reply to reply."""
        for position in range(len(self.conversation) - 1, -1, -1):
            message = self.conversation[position]
            if message.get("role") == "assistant" and message.get("tool_calls"):
                return position
        return None

    def forget_derived(self) -> None:
        """Drop what is derived from the conversation (after a message was taken out of it)."""
        self.context_cache.clear()
        self._tool_calls = _ToolCallIndex()

    def apply(self, event: SessionEvent) -> None:
        """Fold one event into the state (events must arrive in seq order)."""
        p = event.payload
        self.last_seq = event.seq
        self.updated_at = event.ts
        self.event_counts[event.type] = self.event_counts.get(event.type, 0) + 1
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event, p)

    def to_snapshot(self) -> SessionSnapshot:
        """The snapshot to store as state.yaml."""
        return SessionSnapshot(
            session_id=self.session_id,
            agent=self.agent,
            status=self.status,
            last_seq=self.last_seq,
            created_at=self.created_at,
            updated_at=self.updated_at,
            on_disconnect="pause" if self.on_disconnect == "pause" else "continue",
            conversation=list(self.conversation),
            usage=dict(self.usage),
            pending_approvals=list(self.pending_approvals),
            metadata={
                **self.metadata,
                "turns": self.turns,
                "event_counts": dict(self.event_counts),
                **({"turn_closed_by": self.turn_closed_by} if self.turn_closed_by else {}),
                **({"queued": [dict(q) for q in self.queued]} if self.queued else {}),
                **({"turn_usage": dict(self.turn_usage)} if self.turn_usage else {}),
            },
        )

    @classmethod
    def from_snapshot(cls, snapshot: SessionSnapshot) -> SessionState:
        """State as the snapshot left it (replay the events after `last_seq` on top)."""
        metadata = dict(snapshot.metadata)
        turns = int(metadata.pop("turns", 0))
        counts = dict(metadata.pop("event_counts", {}))
        queued = list(metadata.pop("queued", []))
        closed_by = metadata.pop("turn_closed_by", None)
        turn_usage = dict(metadata.pop("turn_usage", {}))
        return cls(
            session_id=snapshot.session_id,
            agent=snapshot.agent,
            status=snapshot.status,
            on_disconnect=snapshot.on_disconnect,
            created_at=snapshot.created_at,
            updated_at=snapshot.updated_at,
            last_seq=snapshot.last_seq,
            turns=turns,
            conversation=list(snapshot.conversation),
            usage=dict(snapshot.usage),
            turn_usage=turn_usage,
            pending_approvals=list(snapshot.pending_approvals),
            queued=queued,
            turn_closed_by=str(closed_by) if closed_by else None,
            metadata=metadata,
            event_counts=counts,
        )


@dataclass
class _ToolCallIndex:
    """Which tool calls have no result yet, read incrementally from a conversation that grows
    (started afresh by `SessionState.forget_derived` when it loses a message).

    A call id names a call within its own batch only: models reuse ids from one reply to the next
    (`call_0` in every reply), so a result answers the most recent call of its id still without
    one, never an earlier turn's call, and an earlier result never answers a later call.
    """

    scanned: int = 0
    #: (position of the assistant message in the conversation, the call), oldest first.
    open: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def update(self, conversation: list[dict[str, Any]]) -> None:
        if self.scanned > len(conversation):  # replaced by a shorter conversation: start again
            self.scanned, self.open = 0, []
        for position in range(self.scanned, len(conversation)):
            message = conversation[position]
            role = message.get("role")
            if role == "tool":
                self._answer(message.get("tool_call_id"))
            elif role == "assistant":
                self.open += [(position, call) for call in message.get("tool_calls") or ()]
        self.scanned = len(conversation)

    def _answer(self, call_id: Any) -> None:
        for index in range(len(self.open) - 1, -1, -1):
            if self.open[index][1].get("id") == call_id:
                del self.open[index]
                return


def _start(state: SessionState, event: SessionEvent, p: dict[str, Any]) -> None:
    state.agent = str(p.get("agent", state.agent))
    state.on_disconnect = str(p.get("on_disconnect", state.on_disconnect))
    state.created_at = event.ts
    state.metadata.update(p.get("metadata") or {})


def _user(state: SessionState, event: SessionEvent, p: dict[str, Any]) -> None:
    state.turns = int(p.get("turn", state.turns + 1))
    message: dict[str, Any] = {"role": "user", "content": p.get("content", "")}
    if p.get("silent"):
        # Context nobody addressed to the agent (a group chat): no reply is owed for it.
        message["silent"] = True
    else:
        state.turn_closed_by = None  # a new turn begins
        state.turn_usage = {}
    state.conversation.append(message)
    if p.get("queue_id"):
        # The queued message's turn started: it is a user message now, no longer waiting.
        state.queued = [q for q in state.queued if q.get("queue_id") != p["queue_id"]]


def _queued(state: SessionState, event: SessionEvent, p: dict[str, Any]) -> None:
    state.queued.append({**p, "seq": event.seq})


def _assistant(state: SessionState, event: SessionEvent, p: dict[str, Any]) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": p.get("content", "")}
    if p.get("tool_calls"):
        message["tool_calls"] = p["tool_calls"]
    if p.get("partial"):
        message["partial"] = True  # (cut off: the model is told so when it reads it again)
    state.conversation.append(message)
    _count_usage(state, p)


def _count_usage(state: SessionState, p: dict[str, Any]) -> None:
    for key, value in (p.get("usage") or {}).items():
        if isinstance(value, int):
            state.usage[key] = state.usage.get(key, 0) + value
            state.turn_usage[key] = state.turn_usage.get(key, 0) + value


def _tool_result(state: SessionState, event: SessionEvent, p: dict[str, Any]) -> None:
    if state.pending_approvals:
        # A call answered without a decision (cancelled, interrupted) waits for nobody any more.
        state.pending_approvals = [a for a in state.pending_approvals if a.get("call_id") != p.get("call_id")]
    message = {
        "role": "tool",
        "tool_call_id": p.get("call_id"),
        "name": p.get("tool"),
        "content": p.get("content", ""),
    }
    if p.get("ok") is False:
        message["is_error"] = True
    if "allowed_tools" in p:
        message["allowed_tools"] = p["allowed_tools"]  # a skill's restriction (skills/active.py)
    state.conversation.append(message)


def _approval_required(state: SessionState, event: SessionEvent, p: dict[str, Any]) -> None:
    # Asked again after a restart: one pending entry per call.
    others = [a for a in state.pending_approvals if a.get("call_id") != p.get("call_id")]
    state.pending_approvals = [*others, dict(p)]


def _approval_decision(state: SessionState, event: SessionEvent, p: dict[str, Any]) -> None:
    state.pending_approvals = [a for a in state.pending_approvals if a.get("call_id") != p.get("call_id")]


def _turn_closed(state: SessionState, event: SessionEvent, p: dict[str, Any]) -> None:
    # The turn ended without an answer and was reported so: it stays over, whatever the log
    # looks like (a user message or tool results still waiting for the model).
    state.turn_closed_by = event.type
    _count_usage(state, p)  # (a failed model call, e.g. an empty reply, was paid for too)


def _turn_retried(state: SessionState, event: SessionEvent, p: dict[str, Any]) -> None:
    # A failed or cancelled turn taken up again: the model owes its last step a reply once more.
    state.turn_closed_by = None
    state.turn_usage = {}
    _leave_out_cut_off_reply(state)


def _attempt_restarted(state: SessionState, event: SessionEvent, p: dict[str, Any]) -> None:
    # A turn a stop or a crash cut off starts again from its last whole step.
    _leave_out_cut_off_reply(state)


def _leave_out_cut_off_reply(state: SessionState) -> None:
    """Drop the reply a cut stream left as the conversation's last step (`partial`): asked for
    again, the model answers the step before it anew, not after its own half answer. The log
    keeps it (clients show it, marked cut off); the conversation, which the model is sent, not."""
    last = _last_step(state.conversation)
    if last is not None and state.conversation[last].get("partial"):
        del state.conversation[last]
        state.forget_derived()


def _last_step(conversation: list[dict[str, Any]]) -> int | None:
    """Where the conversation's last message that is not silent context stands (None: none is)."""
    for position in range(len(conversation) - 1, -1, -1):
        message = conversation[position]
        if not (message.get("role") == "user" and message.get("silent")):
            return position
    return None


def _status(state: SessionState, event: SessionEvent, p: dict[str, Any]) -> None:
    to = p.get("to")
    if to in ("active", "running", "paused", "ended"):
        state.status = to


def _end(state: SessionState, event: SessionEvent, p: dict[str, Any]) -> None:
    state.status = "ended"
    state.queued = []  # an ended session runs nothing more


_HANDLERS = {
    "session_start": _start,
    "user_message": _user,
    "message_queued": _queued,
    "assistant_message": _assistant,
    "tool_result": _tool_result,
    "approval_required": _approval_required,
    "approval_decision": _approval_decision,
    "status_change": _status,
    "error": _turn_closed,
    "cancelled": _turn_closed,
    "turn_retried": _turn_retried,
    "attempt_restarted": _attempt_restarted,
    "session_end": _end,
}


def replay(
    session_id: str, events: Iterable[SessionEvent], state: SessionState | None = None
) -> SessionState:
    """Fold `events` into `state` (a fresh one when None)."""
    state = state or SessionState(session_id=session_id)
    for event in events:
        if event.seq > state.last_seq:
            state.apply(event)
    return state


async def resume(store: SessionStore, session_id: str) -> SessionState:
    """The session's current state: its snapshot plus the events after it, or the whole log."""
    snapshot = await store.load_snapshot(session_id)
    if snapshot is not None:
        tail = await store.read(session_id, SessionReadOptions(after_seq=snapshot.last_seq))
        return replay(session_id, tail, SessionState.from_snapshot(snapshot))
    events = await store.read(session_id)
    if not events:
        raise SessionNotFound(session_id)
    log.info("session %s: no usable snapshot, rebuilt from %d events", session_id, len(events))
    return replay(session_id, events)
