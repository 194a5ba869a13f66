"""The events a session shows its clients, each with a position clients can resume from.

Stored events keep their seq as position (`"12"`); token deltas, which are not stored one by
one, get `"<last seq>.<n>"` (`"12.3"` is the third delta after event 12). Positions sort in
the order events happened, so a client that saw `"12.3"` asks for everything after it and
gets the rest, without duplicates, whether from the in-memory buffer or from the log.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from duragent.stores.base import SessionEvent

if TYPE_CHECKING:
    from duragent.sessions.live import Ticket

#: Events the Rust Duragent's `/stream` clients understand (its parser rejects other names).
STREAM_EVENTS = frozenset(
    {
        "start",
        "token",
        "tool_call",
        "tool_result",
        "approval_required",
        "status",
        "done",
        "error",
        "cancelled",
    }
)
#: Events after which a turn is over (a turn paused by `status` also ends the stream).
TURN_END_EVENTS = frozenset({"done", "error", "cancelled"})
#: The reason of the pause while a person is asked to approve a tool call (the turn goes on after).
APPROVAL_PAUSE_REASON = "awaiting approval"


class Position(NamedTuple):
    """Where an event sits in a session's stream: stored seq, and delta number after it.

    A tuple, not a dataclass: one is made per token and compared per subscriber, and tuple
    creation and comparison run in C.
    """

    seq: int
    delta: int = 0

    @classmethod
    def parse(cls, text: str | None) -> Position:
        """`"12"` / `"12.3"`; raises ValueError for anything else. None means the beginning."""
        if text is None or text == "":
            return cls(0)
        seq, _, delta = text.strip().partition(".")
        position = cls(int(seq), int(delta) if delta else 0)
        if position.seq < 0 or position.delta < 0:
            raise ValueError(f"invalid event position {text!r}")
        return position

    def __str__(self) -> str:
        return f"{self.seq}.{self.delta}" if self.delta else str(self.seq)


class StreamEvent(NamedTuple):
    """One event as clients see it: position, SSE event name, JSON data."""

    position: Position
    event: str
    data: dict[str, Any]

    @property
    def id(self) -> str:
        """The SSE `id:` field."""
        return str(self.position)


def from_stored(event: SessionEvent) -> StreamEvent:
    """The client-facing form of a stored event."""
    p = event.payload
    name = _NAMES.get(event.type, event.type)
    data: dict[str, Any] = {"seq": event.seq, "ts": event.ts.isoformat().replace("+00:00", "Z"), **p}
    if event.type == "assistant_message":
        final = not p.get("tool_calls") and not p.get("partial")
        name = "done" if final else "message"
    elif event.type == "user_message":
        data["turn"] = p.get("turn")
    return StreamEvent(Position(event.seq), name, data)


def token(after_seq: int, number: int, text: str) -> StreamEvent:
    """A token delta: not stored, positioned after the last stored event."""
    return StreamEvent(Position(after_seq, number), "token", {"content": text})


_NAMES = {
    "user_message": "start",
    "status_change": "status",
}


def ends_turn(event: StreamEvent) -> bool:
    """True for the event a turn ends with: done, error, cancelled, or a pause."""
    return event.event in TURN_END_EVENTS or (event.event == "status" and event.data.get("to") == "paused")


async def asked_again(events: AsyncIterable[StreamEvent], call_id: str, seen: list[StreamEvent]) -> bool:
    """Follow a stopped turn taken up again: True once it has asked for `call_id` and paused for
    the answer, False when it asked another call or ended first (the stream ending too). What it
    read is appended to `seen`, for a caller that reports what happened instead."""
    asked: str | None = None
    async for event in events:
        seen.append(event)
        if event.event == "approval_required":
            asked = str(event.data.get("call_id"))
        elif asked is not None and event.event == "status" and event.data.get("to") == "paused":
            return asked == call_id
        elif ends_turn(event):
            return False
    return False


def ends_turn_unless_asking(event: StreamEvent) -> bool:
    """Like `ends_turn`, but waiting for an approval is not an end (for clients that wait for it)."""
    if event.event == "status" and event.data.get("reason") == APPROVAL_PAUSE_REASON:
        return False
    return ends_turn(event)


async def own_turn(
    events: AsyncIterable[StreamEvent], ticket: Ticket, ends: Callable[[StreamEvent], bool] = ends_turn
) -> AsyncIterator[StreamEvent]:
    """Of a subscription's `events`, those of the ticket's turn (turns ahead of it skipped), to its end.

    `ends` says which event is the last one (by default: `ends_turn`).
    """
    async for event in events:
        if not ticket.started.done():
            continue
        if ticket.started.cancelled():
            if event.event == "cancelled":
                yield event
                return
            continue
        if event.position < ticket.started.result():
            continue
        yield event
        if ends(event):
            return
