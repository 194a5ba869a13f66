"""What a running turn tells its listeners (SSE streams, the terminal, gateways)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias


@dataclass(frozen=True)
class TurnStarted:
    """A user message was stored and the turn began (`content` is None when resuming a turn)."""

    turn: int
    content: str | None


@dataclass(frozen=True)
class TextDelta:
    """A piece of the assistant's reply as the model streams it."""

    text: str


@dataclass(frozen=True)
class ToolCallStarted:
    """A tool call is about to run."""

    call_id: str
    tool: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolCallFinished:
    """A tool call ended; `content` is what the model reads."""

    call_id: str
    tool: str
    ok: bool
    content: str
    duration_ms: int


@dataclass(frozen=True)
class ApprovalRequired:
    """A tool call waits for a person: decide with allow_once, allow_always or deny."""

    call_id: str
    tool: str
    arguments: dict[str, Any]
    command: str


@dataclass(frozen=True)
class ApprovalResolved:
    """An approval was decided (by a person, or denied by its timeout)."""

    call_id: str
    decision: str
    reason: str


@dataclass(frozen=True)
class ModelRetrying:
    """The model call failed before its reply began (rate limit, overload, unreachable) and is
    tried again: attempt `attempt` of `attempts` in `seconds`."""

    attempt: int
    attempts: int
    seconds: float
    reason: str


@dataclass(frozen=True)
class Notification:
    """The agent used notify_user: show this to every attached client."""

    message: str


@dataclass(frozen=True)
class TurnFinished:
    """The assistant's final message of the turn was stored."""

    message_id: str
    content: str
    #: Tokens of every model call of the turn, summed.
    usage: dict[str, int] = field(default_factory=dict)
    #: The model stopped at its output token limit: the reply is cut off.
    truncated: bool = False


@dataclass(frozen=True)
class TurnFailed:
    """The turn stopped on an error (the session stays usable)."""

    code: str
    message: str


@dataclass(frozen=True)
class TurnPaused:
    """The turn stopped at a safe point because a pause was asked for; resume continues it."""

    reason: str


RuntimeEvent: TypeAlias = (
    TurnStarted
    | TextDelta
    | ToolCallStarted
    | ToolCallFinished
    | ApprovalRequired
    | ApprovalResolved
    | Notification
    | ModelRetrying
    | TurnFinished
    | TurnFailed
    | TurnPaused
)
