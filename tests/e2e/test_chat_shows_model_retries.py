"""`duragent chat` while the model is being tried again (a rate limit with Retry-After).

The server tells every client following the session (`GET /events`) with an unstored `retrying`
event {attempt, attempts, in_seconds, reason}; the terminal shows it, so a person does not look
at "thinking" for as long as the provider makes us wait (up to a minute per attempt) unsure why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from duragent.testing.fake_llm import error, text
from tests.e2e.terminal import Terminal
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, fake_model, server, workspace

__all__ = ["fake_model", "server", "workspace"]  # the fixtures this test uses


def test_chat_says_the_model_is_tried_again_and_why_while_it_waits(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(error(429, "slow down", retry_after=1), text("made it"))
    term = Terminal(["chat"], workspace)
    term.expect("helper · fake-model via openai")
    term.prompt()
    term.type("hello")
    shown = term.expect("made it")
    term.prompt()
    term.child.sendcontrol("d")
    term.finish()
    assert "429" in shown  # why the reply is late
    assert "slow down" in shown
    assert "2 of 4" in shown  # which attempt comes, out of how many
