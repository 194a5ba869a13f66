"""Approvals: a tool call the policy says to `ask` about waits here until a person decides.

The loop calls `broker.request(call_id, ...)` and awaits the result; the server, the CLI or a
gateway calls `broker.decide(call_id, "allow_once" | "allow_always" | "deny", session_id=...)`
from another task. A request is known by its session and call id together: a call id is unique
only within its conversation (the demo's, many local servers' `call_0`). Waiting holds no thread
(an asyncio future), and a request nobody answers within its timeout resolves to deny.
Everything runs on one event loop; `decide` from another thread must go through
`loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Generator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, cast, get_args

from duragent.errors import DuragentError, NotFound, UsageError
from duragent.stores.base import changes_by_person, utcnow

ApprovalDecision = Literal["allow_once", "allow_always", "deny"]
ApprovalReason = Literal["decided", "timeout"]
#: How long a request waits for a person unless the caller says otherwise.
DEFAULT_APPROVAL_TIMEOUT = timedelta(minutes=10)


class UnknownApproval(NotFound):
    """No open approval request has this call id (never asked, already decided, or timed out)."""

    def __init__(self, call_id: str):
        super().__init__(f"no pending approval for call {call_id!r}")
        self.call_id = call_id


class DuplicateApproval(DuragentError):
    """An approval for this call id is already waiting."""


class InvalidDecision(UsageError):
    """A decision other than allow_once, allow_always or deny."""


@dataclass(frozen=True)
class ApprovalRequest:
    """A tool call waiting for a person: what would run, for whom, and until when."""

    call_id: str
    session_id: str
    agent: str
    tool: str
    invocation: str
    arguments: dict[str, Any] = field(default_factory=dict)
    requested_at: datetime = field(default_factory=utcnow)
    expires_at: datetime | None = None

    def to_record(self) -> dict[str, Any]:
        """JSON-ready form, for events, snapshots and the HTTP API."""
        return {
            "call_id": self.call_id,
            "session_id": self.session_id,
            "agent": self.agent,
            "tool": self.tool,
            "command": self.invocation,
            "arguments": self.arguments,
            "requested_at": _iso(self.requested_at),
            "expires_at": _iso(self.expires_at) if self.expires_at else None,
        }


def changes_for_answer(reason: str) -> AbstractContextManager[None]:
    """Around writing down an answer: committed as the person's when a person decided (`decided`),
    as the agent's when nobody did in time. What the turn does next is the agent's either way."""
    return changes_by_person() if reason == "decided" else contextlib.nullcontext()


@dataclass(frozen=True)
class ApprovalOutcome:
    """How a request ended: the decision, and whether a person made it or the timeout did."""

    decision: ApprovalDecision
    reason: ApprovalReason
    request: ApprovalRequest


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class _PendingOutcome:
    """What `request` returns: the wait starts only when awaited, so a withdrawn request leaves
    no never-awaited coroutine behind."""

    def __init__(self, start: Callable[[], Coroutine[Any, Any, ApprovalOutcome]]):
        self._start = start

    def __await__(self) -> Generator[Any, None, ApprovalOutcome]:
        return self._start().__await__()


class ApprovalBroker:
    """Open approval requests of one process, each resolved once by `decide` or its timeout."""

    def __init__(self, default_timeout: timedelta | None = DEFAULT_APPROVAL_TIMEOUT):
        self.default_timeout = default_timeout
        #: (session id, call id) -> the request and what its answer resolves
        self._open: dict[tuple[str, str], tuple[ApprovalRequest, asyncio.Future[ApprovalDecision]]] = {}

    def request(
        self,
        call_id: str,
        *,
        session_id: str,
        agent: str,
        tool: str,
        invocation: str,
        arguments: dict[str, Any] | None = None,
        timeout: timedelta | None = None,
    ) -> Awaitable[ApprovalOutcome]:
        """Open a request now (it shows in `pending()` at once) and return what to await for the outcome.

        `timeout` defaults to the broker's; None on both means wait until decided.
        """
        if (session_id, call_id) in self._open:
            raise DuplicateApproval(f"an approval for call {call_id!r} is already pending")
        wait = timeout if timeout is not None else self.default_timeout
        now = utcnow()
        entry = ApprovalRequest(
            call_id=call_id,
            session_id=session_id,
            agent=agent,
            tool=tool,
            invocation=invocation,
            arguments=dict(arguments or {}),
            requested_at=now,
            expires_at=now + wait if wait is not None else None,
        )
        future: asyncio.Future[ApprovalDecision] = asyncio.get_running_loop().create_future()
        self._open[session_id, call_id] = (entry, future)
        return _PendingOutcome(lambda: self._wait(entry, future, wait))

    async def _wait(
        self, entry: ApprovalRequest, future: asyncio.Future[ApprovalDecision], wait: timedelta | None
    ) -> ApprovalOutcome:
        try:
            seconds = wait.total_seconds() if wait is not None else None
            decision = await asyncio.wait_for(asyncio.shield(future), seconds)
        except TimeoutError:
            return ApprovalOutcome("deny", "timeout", entry)
        finally:
            # Whatever ended the wait (decision, timeout, the turn being cancelled), it is closed now.
            self._open.pop((entry.session_id, entry.call_id), None)
            if not future.done():
                future.cancel()
        return ApprovalOutcome(decision, "decided", entry)

    def decide(self, call_id: str, decision: str, *, session_id: str | None = None) -> ApprovalRequest:
        """Resolve an open request (of `session_id`; without it, the only one with `call_id`);
        UnknownApproval when there is none, InvalidDecision for a bad value."""
        if decision not in get_args(ApprovalDecision):
            raise InvalidDecision(f"decision must be allow_once, allow_always or deny, got {decision!r}")
        opened = self._open.pop(self._key(call_id, session_id), None)
        if opened is None:
            raise UnknownApproval(call_id)
        entry, future = opened
        with contextlib.suppress(asyncio.InvalidStateError):
            # A future cancelled between the lookup and now belongs to a turn that is gone.
            future.set_result(cast(ApprovalDecision, decision))
        return entry

    def withdraw(self, call_id: str, *, session_id: str | None = None) -> None:
        """Close an open request nobody will wait for (its turn stopped before asking); no-op if none."""
        opened = self._open.pop(self._key(call_id, session_id), None)
        if opened is not None and not opened[1].done():
            opened[1].cancel()

    def is_open(self, call_id: str, *, session_id: str) -> bool:
        """Whether the request for `call_id` of `session_id` still waits for its answer."""
        return (session_id, call_id) in self._open

    def pending(self, session_id: str | None = None) -> list[ApprovalRequest]:
        """Open requests, oldest first, optionally of one session."""
        entries = [entry for entry, _future in self._open.values()]
        if session_id is not None:
            entries = [entry for entry in entries if entry.session_id == session_id]
        return sorted(entries, key=lambda entry: entry.requested_at)

    def get(self, call_id: str, *, session_id: str | None = None) -> ApprovalRequest:
        """The open request for `call_id` (of `session_id`); UnknownApproval when there is none."""
        opened = self._open.get(self._key(call_id, session_id))
        if opened is None:
            raise UnknownApproval(call_id)
        return opened[0]

    def _key(self, call_id: str, session_id: str | None) -> tuple[str, str]:
        """The request's key: of `session_id`, or the only open request with `call_id` (a missing
        key when there is none or more than one)."""
        if session_id is not None:
            return (session_id, call_id)
        matching = [key for key in self._open if key[1] == call_id]
        return matching[0] if len(matching) == 1 else ("", call_id)
