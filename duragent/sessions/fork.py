"""Forking a session: a new session whose history is the original's up to a point.

The fork point is a sequence number (`ID@12`) or a revision of the data repository
(`ID@a1b2c3d`: the session's events.jsonl as that commit has it). The new session gets a new
id; its first event is a `session_start` like the original's plus
`forked_from: {session, seq}`, and the original's events 2..seq follow with their seq numbers,
times and payloads (new event ids), but for a `session_end`: the fork of an ended session is open.
A fork made in the middle of a turn ends with a `status_change` to `paused` (`FORKED_MID_TURN`):
`/resume` takes the turn up (a call copied without its result gets one first, as never run). The
original session is only read.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from duragent.errors import DuragentError, UsageError
from duragent.ids import check_name, new_id
from duragent.sessions.state import SessionState, replay
from duragent.stores.base import SessionEvent, SessionNotFound, SessionReadOptions, SessionStore, utcnow
from duragent.vcs.repo import GitRepo


class ForkFailed(DuragentError):
    """The session cannot be forked at that point; the message says why."""


@dataclass(frozen=True)
class ForkTarget:
    """`ID`, `ID@SEQ` or `ID@REV` parsed: where to fork from."""

    session_id: str
    seq: int | None = None
    rev: str | None = None


#: Digits this long after '@' are a commit id (as git abbreviates them), shorter ones a seq.
_SHORTEST_COMMIT_ID = 7


def parse_fork_target(text: str) -> ForkTarget:
    """`s_123` (the whole session), `s_123@12` (up to seq 12) or `s_123@a1b2c3d` (as of that commit)."""
    session_id, sep, point = text.partition("@")
    check_name(session_id, "session id")
    if not sep:
        return ForkTarget(session_id)
    if not point:
        raise UsageError(f"nothing after '@' in {text!r}: use ID@SEQ or ID@REV")
    if point.isdigit() and len(point) < _SHORTEST_COMMIT_ID:
        return ForkTarget(session_id, seq=int(point))
    # (an abbreviated commit id can be all digits: git shows at least 7 characters)
    return ForkTarget(session_id, rev=point)


async def events_to_fork(
    store: SessionStore,
    target: ForkTarget,
    *,
    repo: GitRepo | None = None,
    events_path: str | None = None,
) -> list[SessionEvent]:
    """The original's events up to the fork point (`repo` and `events_path` needed for a revision)."""
    if target.rev is not None:
        if repo is None or events_path is None:
            raise UsageError("forking at a revision needs the data directory's git repository")
        # git and parsing a whole log: off the event loop
        text = await asyncio.to_thread(repo.file_at, target.rev, events_path)
        if text is None:
            raise ForkFailed(f"revision {target.rev} has no {events_path}")
        events = await asyncio.to_thread(_parse_log, text)
    else:
        events = await store.read(target.session_id)
        if target.seq is not None:
            if target.seq < 1 or target.seq > (events[-1].seq if events else 0):
                last = events[-1].seq if events else 0
                raise ForkFailed(f"session {target.session_id} has events 1..{last}, not seq {target.seq}")
            events = [event for event in events if event.seq <= target.seq]
    if not events:
        raise SessionNotFound(target.session_id)
    if events[0].type != "session_start":
        raise ForkFailed(f"session {target.session_id} does not begin with session_start")
    return events


def _parse_log(text: str) -> list[SessionEvent]:
    from duragent.stores.filesystem.sessions import parse_event_line

    events: list[SessionEvent] = []
    for line in text.encode("utf-8").split(b"\n"):
        if line.strip():
            event = parse_event_line(line)
            if event is not None:
                events.append(event)
    return events


async def fork_session(
    store: SessionStore,
    source_id: str,
    events: list[SessionEvent],
    *,
    name: str | None = None,
    new_session_id: str | None = None,
) -> SessionState:
    """Write the fork of `source_id` made of `events` (from `events_to_fork`); its state when durable.

    The original's `session_end` is left out: a fork is a session to talk to, even of one that ended.
    """
    start, rest = events[0], [event for event in events[1:] if event.type != "session_end"]
    last_seq = events[-1].seq
    payload: dict[str, Any] = dict(start.payload)
    metadata = dict(payload.get("metadata") or {})
    if name:
        metadata["name"] = name
    payload["metadata"] = metadata
    payload["forked_from"] = {"session": source_id, "seq": last_seq}
    session_id = new_session_id or new_id("s")
    copied = [SessionEvent(seq=1, id=new_id("ev"), ts=utcnow(), type="session_start", payload=payload)]
    # seq numbers stay those of the original, so `ID@SEQ` means the same event in both sessions
    copied += [replace(event, id=new_id("ev")) for event in rest]
    copied = _renumbered(copied)
    state = replay(session_id, copied)
    if not state.pending_approvals:
        # A call copied without its result never ran in the fork: answered so, the model is
        # asked again from there (a call waiting for a person is asked again instead, its batch whole).
        for call in state.open_tool_calls():
            result = {
                "call_id": call.get("id"),
                "tool": call.get("name"),
                "ok": False,
                "content": FORKED_BEFORE_RESULT,
            }
            copied.append(SessionEvent(len(copied) + 1, new_id("ev"), utcnow(), "tool_result", result))
        state = replay(session_id, copied)
    if (state.status != "paused" or _paused_for_an_approval_decided(copied, state)) and _mid_turn(state):
        # Nothing runs the copied turn: the fork waits, paused, for a person to take it up, where
        # a copied `running` would say a turn runs that never does.
        reason = FORKED_AT_APPROVAL if state.pending_approvals else FORKED_MID_TURN
        change = {"from": state.status, "to": "paused", "reason": reason}
        copied.append(SessionEvent(len(copied) + 1, new_id("ev"), utcnow(), "status_change", change))
        state = replay(session_id, copied)
    await store.append(session_id, copied)
    await store.save_snapshot(state.to_snapshot())
    return state


#: Why a fork made in the middle of a turn is paused (`session show`, attach).
FORKED_MID_TURN = "forked in the middle of a turn: /resume takes the turn up"
#: Why a fork made while a call waited for a person is paused.
FORKED_AT_APPROVAL = "forked while a call waited for approval: attaching asks it again"
#: The result of a call the fork point left without one (it never ran in the fork).
FORKED_BEFORE_RESULT = "interrupted: the session was forked before this tool call finished"


def _paused_for_an_approval_decided(events: list[SessionEvent], state: SessionState) -> bool:
    """True when the copy stops between an approval's decision and the status change after it:
    paused "awaiting approval" with nothing left to approve (a reason that would mislead)."""
    from duragent.sessions.stream import APPROVAL_PAUSE_REASON

    if state.status != "paused" or state.pending_approvals:
        return False
    change = next((event for event in reversed(events) if event.type == "status_change"), None)
    return change is not None and change.payload.get("reason") == APPROVAL_PAUSE_REASON


def _mid_turn(state: SessionState) -> bool:
    """True when the fork point falls inside a turn: one running, a call waiting for a person,
    or the model left to speak (a turn that failed or was cancelled is over)."""
    from duragent.runtime.loop import owes_reply

    if state.status == "running" or state.pending_approvals:
        return True
    return state.turn_closed_by is None and owes_reply(state.conversation, past_partial=True)


def _renumbered(events: list[SessionEvent]) -> list[SessionEvent]:
    """Seq 1, 2, 3... in order: the store requires a gapless log (a truncated original may skip)."""
    return [event if event.seq == i else replace(event, seq=i) for i, event in enumerate(events, start=1)]


async def read_forked_from(store: SessionStore, session_id: str) -> dict[str, Any] | None:
    """The `forked_from` of a session's start event, or None for a session that is not a fork."""
    events = await store.read(session_id, SessionReadOptions(limit=1))
    if not events:
        return None
    found = events[0].payload.get("forked_from")
    return dict(found) if isinstance(found, dict) else None
