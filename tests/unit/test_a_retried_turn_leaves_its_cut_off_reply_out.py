"""A failed or cancelled turn that kept a reply the stream cut off (`partial: true`) runs again
without it: the model answers the person's message anew, not after its own half answer. The log
keeps the half reply; the conversation folded from it (what the model is sent) leaves it out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from duragent.runtime.loop import can_run_again
from duragent.sessions.state import SessionState, replay
from duragent.stores.base import SessionEvent

WHEN = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def folded(*made: tuple[str, dict[str, Any]]) -> SessionState:
    events = [SessionEvent(n, f"ev_{n}", WHEN, kind, payload) for n, (kind, payload) in enumerate(made, 1)]
    return replay("s_1", events)


@pytest.mark.parametrize("closed_by", ["error", "cancelled"])
def test_a_turn_that_kept_a_cut_off_reply_can_run_again_without_it(closed_by: str) -> None:
    kept = [
        ("user_message", {"content": "count to four", "turn": 1}),
        ("assistant_message", {"content": "one two", "partial": True}),
        (closed_by, {"code": "llm_error", "message": "cut off"}),
    ]
    state = folded(*kept)
    assert can_run_again(state)
    assert state.open_tool_calls() == []  # (worked out from the conversation so far)

    state.apply(SessionEvent(4, "ev_4", WHEN, "turn_retried", {"after": closed_by, "turn": 1}))

    assert state.conversation == [{"role": "user", "content": "count to four"}]
    calls = [{"id": "c1", "name": "bash", "arguments": {"command": "seq 4"}}]
    state.apply(SessionEvent(5, "ev_5", WHEN, "assistant_message", {"content": "", "tool_calls": calls}))
    assert state.open_tool_calls() == calls  # (the call the retry made, not skipped as seen)


def test_context_a_group_chat_added_after_the_cut_off_reply_stays() -> None:
    state = folded(
        ("user_message", {"content": "count to four", "turn": 1}),
        ("assistant_message", {"content": "one two", "partial": True}),
        ("error", {"code": "llm_error", "message": "cut off"}),
        ("user_message", {"content": "lunch?", "silent": True}),
        ("turn_retried", {"after": "error", "turn": 1}),
    )

    assert [m["content"] for m in state.conversation] == ["count to four", "lunch?"]


def test_a_whole_reply_is_never_left_out() -> None:
    state = folded(
        ("user_message", {"content": "count to four", "turn": 1}),
        ("assistant_message", {"content": "one two three four"}),
        ("cancelled", {"reason": "cancelled by client"}),
    )

    assert not can_run_again(state)
