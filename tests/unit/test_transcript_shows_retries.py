"""`session log` and `session export --format md` show a turn run again on request: the log
printed its raw payload (`-- turn_retried {"after": ...}`), the Markdown left it and a cancel out,
so an export read "error", then an answer, with no sign of why the turn went on."""

from __future__ import annotations

from datetime import UTC, datetime

from duragent.sessions.transcript import render_markdown, render_text
from duragent.stores.base import SessionEvent

WHEN = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)


def events() -> list[SessionEvent]:
    made = [
        ("user_message", {"content": "what is the plan?", "turn": 1}),
        ("error", {"code": "llm_error", "message": "the model server is down"}),
        ("turn_retried", {"after": "error", "turn": 1}),
        ("assistant_message", {"content": "Here is the plan."}),
        ("user_message", {"content": "and then?", "turn": 2}),
        ("cancelled", {"reason": "cancelled by client"}),
    ]
    return [SessionEvent(n, f"ev_{n}", WHEN, kind, payload) for n, (kind, payload) in enumerate(made, 1)]


def test_the_log_says_the_turn_ran_again() -> None:
    lines = list(render_text(events(), timestamps=False))
    assert lines[2] == "-- the turn runs again (after error, on request)"
    assert lines[5] == "!! cancelled (cancelled by client)"


def test_the_markdown_export_lists_the_retry_and_the_cancel() -> None:
    text = "".join(render_markdown("s_1", events()))
    assert "- !! error llm_error: the model server is down\n" in text
    assert "- the turn runs again (after error, on request)\n" in text
    assert "- !! cancelled (cancelled by client)\n" in text


def test_the_log_says_in_words_that_a_turn_started_again_and_that_a_message_waited() -> None:
    """Both printed their raw payload: `-- attempt_restarted {"discard_after": "16", "turn": 5}`."""
    made = [
        ("attempt_restarted", {"discard_after": "16", "turn": 5}),
        ("message_queued", {"queue_id": "q_1", "content": "and also this"}),
        ("user_message", {"content": "hi", "turn": 6, "sender": {"id": "42", "name": "Ana"}}),
    ]
    lines = list(
        render_text(
            (SessionEvent(n, f"ev_{n}", WHEN, kind, p) for n, (kind, p) in enumerate(made, 1)),
            timestamps=False,
        )
    )
    assert lines == [
        "-- the unfinished turn starts again from its last stored step (what it streamed since is void)",
        "-- queued for its turn: user: and also this",
        "Ana: hi",  # (a chat's sender by name, not its record)
    ]
