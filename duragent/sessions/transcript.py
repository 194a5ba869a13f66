"""Render a session's events as a transcript a person reads (`session log`, `session export --format md`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from duragent.stores.base import SessionEvent
from duragent.terminal_text import printable

_ARG_PREVIEW = 80


def _preview(value: Any, limit: int = _ARG_PREVIEW) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sender(payload: dict[str, Any]) -> str:
    """Who sent a message: `user`, or a chat's sender by name (a gateway's `{id, name, gateway}`)."""
    sender = payload.get("sender")
    if isinstance(sender, dict):
        named = sender.get("name") or sender.get("id")
        return str(named) if named else "user"
    return str(sender) if sender else "user"


def describe(event: SessionEvent) -> str:
    """One event as a line or block of plain text."""
    p = event.payload
    kind = event.type
    if kind == "user_message":
        return f"{_sender(p)}: {p.get('content', '')}"
    if kind == "assistant_message":
        cut = " (cut off)" if p.get("partial") else ""
        return f"assistant{cut}: {p.get('content', '')}"
    if kind == "tool_call":
        return f"  → {p.get('tool', '?')}({_preview(p.get('arguments', {}))})"
    if kind == "tool_result":
        mark = "ok" if p.get("ok", True) else "failed"
        return f"  ← {p.get('tool', '?')} {mark}: {_preview(p.get('content', ''))}"
    if kind == "approval_required":
        return f"  ? approval required for {p.get('tool', '?')}({_preview(p.get('arguments', {}))})"
    if kind == "approval_decision":
        return f"  ! {p.get('decision', '?')} ({p.get('call_id', '')})"
    if kind == "status_change":
        reason = f": {p['reason']}" if p.get("reason") else ""
        return f"-- {p.get('from', '?')} → {p.get('to', '?')}{reason}"
    if kind == "session_start":
        mode = p.get("on_disconnect", "?")
        return f"-- session started with agent {p.get('agent', '?')} (on_disconnect: {mode})"
    if kind == "session_end":
        return f"-- session ended ({p.get('reason', 'ended')})"
    if kind == "error":
        return f"!! error {p.get('code', '')}: {p.get('message', '')}"
    if kind == "cancelled":
        return f"!! cancelled ({p.get('reason', 'cancelled')})"
    if kind == "turn_retried":
        return f"-- the turn runs again (after {p.get('after', 'error')}, on request)"
    if kind == "attempt_restarted":
        return (
            "-- the unfinished turn starts again from its last stored step (what it streamed since is void)"
        )
    if kind == "message_queued":
        return f"-- queued for its turn: {_sender(p)}: {p.get('content', '')}"
    return f"-- {kind} {_preview(p)}"


def render_text(events: Iterable[SessionEvent], *, timestamps: bool = True) -> Iterator[str]:
    """Transcript lines, one or more per event, with `HH:MM:SS` times when asked."""
    for event in events:
        line = printable(describe(event))
        yield f"[{event.ts.strftime('%H:%M:%S')}] {line}" if timestamps else line


#: Events the Markdown export lists as bullets under the message they follow.
_BULLETS = frozenset(
    {
        "tool_call",
        "tool_result",
        "approval_required",
        "approval_decision",
        "error",
        "cancelled",
        "turn_retried",
    }
)


def render_markdown(session_id: str, events: Iterable[SessionEvent]) -> Iterator[str]:
    """A Markdown document of the conversation: messages as sections, tools as bullets."""
    yield f"# Session {session_id}\n"
    for event in events:
        p = event.payload
        when = event.ts.strftime("%Y-%m-%d %H:%M:%S UTC")
        if event.type == "user_message":
            yield f"## {p.get('sender') or 'User'} — {when}\n\n{p.get('content', '')}\n"
        elif event.type == "assistant_message":
            cut = " (cut off)" if p.get("partial") else ""
            yield f"## Assistant{cut} — {when}\n\n{p.get('content', '')}\n"
        elif event.type in _BULLETS:
            yield f"- {describe(event).strip().removeprefix('-- ')}\n"
        elif event.type in ("session_start", "session_end", "status_change"):
            yield f"*{describe(event).removeprefix('-- ')}*\n"
