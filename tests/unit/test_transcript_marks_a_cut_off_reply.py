"""`session log` and `session export --format md` show a reply the stream cut off (`partial: true`)
as cut off: it read as a finished answer, followed by the error and, after `/retry`, a second one."""

from __future__ import annotations

from datetime import UTC, datetime

from duragent.sessions.transcript import render_markdown, render_text
from duragent.stores.base import SessionEvent

WHEN = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)


def events() -> list[SessionEvent]:
    made = [
        ("user_message", {"content": "count to four", "turn": 1}),
        ("assistant_message", {"content": "one two", "partial": True}),
        ("error", {"code": "llm_error", "message": "openai broke mid-stream"}),
        ("turn_retried", {"after": "error", "turn": 1}),
        ("assistant_message", {"content": "one two three four"}),
    ]
    return [SessionEvent(n, f"ev_{n}", WHEN, kind, payload) for n, (kind, payload) in enumerate(made, 1)]


def test_the_log_marks_a_cut_off_reply() -> None:
    lines = list(render_text(events(), timestamps=False))
    assert lines[1] == "assistant (cut off): one two"
    assert lines[4] == "assistant: one two three four"


def test_the_markdown_export_marks_a_cut_off_reply() -> None:
    text = "".join(render_markdown("s_1", events()))
    assert "## Assistant (cut off) — 2026-12-06 18:00:00 UTC\n\none two\n" in text
    assert "## Assistant — 2026-12-06 18:00:00 UTC\n\none two three four\n" in text
