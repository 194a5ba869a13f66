"""`session`: a supervisor agent looks at its other sessions (list them, read their last messages).

Only sessions of the same agent are visible, and reads are bounded (at most `MAX_MESSAGES`
messages, each cut to `MESSAGE_CHARS`, the whole capped like any tool output), so a supervisor
can follow the work it started elsewhere without flooding its own context.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from duragent.stores.base import SessionNotFound, SessionReadOptions, SessionStore
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from duragent.tools.output import HeadTailBuffer

#: Most messages one `read` returns.
MAX_MESSAGES = 50
#: Longest text kept of one message.
MESSAGE_CHARS = 2000
#: Most sessions one `list` returns.
MAX_LISTED = 50
#: How many events back a `read` looks for messages.
_READ_WINDOW = 500
_MESSAGE_TYPES = frozenset({"user_message", "assistant_message", "tool_result", "notification"})
_ROLES = {
    "user_message": "user",
    "assistant_message": "assistant",
    "tool_result": "tool",
    "notification": "notice",
}


class SessionArgs(ToolArgs):
    """Arguments of `session`."""

    action: Literal["list", "read"] = Field(
        description="list: your other sessions; read: one's last messages."
    )
    session_id: str | None = Field(None, description="For read: the session's id (s_...).")
    last: int = Field(10, ge=1, le=MAX_MESSAGES, description="For read: how many of the newest messages.")
    status: Literal["active", "running", "paused", "ended"] | None = Field(
        None, description="For list: only these."
    )

    @model_validator(mode="after")
    def _read_needs_id(self) -> SessionArgs:
        if self.action == "read" and not self.session_id:
            raise ValueError("read needs session_id (see action list)")
        return self


class SessionTool(Tool[SessionArgs]):
    """List this agent's other sessions and read their latest messages."""

    name = "session"
    description = (
        "Follow your other conversations. action=list shows your sessions (id, status, last "
        "activity); action=read with session_id returns its last `last` messages (default 10)."
    )
    Args = SessionArgs

    async def run(self, args: SessionArgs, ctx: ToolContext) -> ToolResult:
        """List or read through the session store."""
        store = ctx.session_store
        if store is None:
            return ToolResult(False, "sessions cannot be read here")
        if args.action == "list":
            return await _list(store, ctx, args.status)
        assert args.session_id is not None  # checked by the model validator
        return await _read(store, ctx, args.session_id, args.last)

    def invocation(self, args: SessionArgs, ctx: ToolContext) -> str:
        """`list`, or `read <session id>`."""
        return "list" if args.action == "list" else f"read {args.session_id}"


async def _list(store: SessionStore, ctx: ToolContext, status: str | None) -> ToolResult:
    summaries = [
        s for s in await store.list(agent=ctx.agent, status=status) if s.session_id != ctx.session_id
    ]
    summaries.sort(key=lambda s: s.updated_at, reverse=True)
    rows = [
        {
            "session_id": s.session_id,
            "status": s.status,
            "created_at": s.created_at.isoformat(),
            "updated_at": s.updated_at.isoformat(),
            "events": s.last_seq,
        }
        for s in summaries[:MAX_LISTED]
    ]
    if not rows:
        return ToolResult(True, "no other sessions", {"sessions": []})
    lines = [f"{r['session_id']}  {r['status']:<7}  last activity {r['updated_at']}" for r in rows]
    if len(summaries) > MAX_LISTED:
        lines.append(f"... and {len(summaries) - MAX_LISTED} older sessions")
    return ToolResult(True, "\n".join(lines), {"sessions": rows})


async def _read(store: SessionStore, ctx: ToolContext, session_id: str, last: int) -> ToolResult:
    owned = {s.session_id for s in await store.list(agent=ctx.agent)}
    if session_id not in owned:
        return ToolResult(False, f"no session {session_id!r} of agent {ctx.agent} (see action list)")
    try:
        last_seq = await store.last_seq(session_id)
        events = await store.read(
            session_id, SessionReadOptions(after_seq=max(0, last_seq - _READ_WINDOW), types=_MESSAGE_TYPES)
        )
    except SessionNotFound:
        return ToolResult(False, f"session {session_id} no longer exists")
    shown = [e for e in events if _text(e.payload)][-last:]
    output = HeadTailBuffer(ctx.limits.output_cap_bytes)
    for event in shown:
        text = _text(event.payload)
        if len(text) > MESSAGE_CHARS:
            text = text[:MESSAGE_CHARS] + f" [... {len(text) - MESSAGE_CHARS} more characters]"
        output.feed(f"[{event.seq}] {_ROLES[event.type]}: {text}\n".encode())
    if not shown:
        return ToolResult(True, f"session {session_id} has no messages yet")
    return ToolResult(True, output.text().rstrip("\n"), {"session_id": session_id, "messages": len(shown)})


def _text(payload: dict[str, object]) -> str:
    value = payload.get("content", payload.get("message"))
    return value if isinstance(value, str) else ""
