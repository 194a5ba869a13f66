"""A fork made in the middle of a turn is paused, says so, and `/resume` takes its turn up.

It was copied `running`: `session list` said running, `session show` counted unattended time from
the original's clock, and `attach` waited, silent and without a prompt, for a turn nobody ran.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from duragent.sessions.fork import FORKED_MID_TURN
from duragent.testing.fake_llm import text, tool_calls
from tests.e2e.terminal import Terminal
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, duragent, fake_model, server, workspace

__all__ = ["fake_model", "server", "workspace"]  # the fixtures these tests use

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def events(workspace: Path, session: str) -> list[dict[str, Any]]:
    path = workspace / ".duragent" / "sessions" / session / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("point", ["tool_result", "tool_call"])
def test_a_fork_in_a_turn_is_paused_and_resume_takes_its_turn_up(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM, point: str
) -> None:
    fake_model.enqueue(tool_calls([("bash", {"command": "echo hi"})]), text("It said hi."))
    sent = duragent(workspace, "send", "--new", "--json", "say hi with bash")
    original = json.loads(sent.stdout)["session_id"]
    # after the tool's result, or at its call (a fork made while a tool ran: no result copied)
    at = next(e["seq"] for e in events(workspace, original) if e["type"] == point)

    forked = duragent(workspace, "session", "fork", f"{original}@{at}", "--name", "what-if")
    assert forked.returncode == 0, forked.stderr

    listed = json.loads(duragent(workspace, "session", "list", "--json").stdout)
    assert {s["name"]: s["status"] for s in listed} == {"what-if": "paused", None: "active"}
    shown = duragent(workspace, "session", "show", "what-if")
    assert FORKED_MID_TURN in shown.stdout
    assert "unattended" not in shown.stdout

    fake_model.enqueue(text("Taken up again."))
    term = Terminal(["attach", "what-if"], workspace)
    term.expect("/resume")
    term.prompt()  # not a silent wait for a turn nobody runs
    term.type("/resume")
    term.expect("Taken up again.")  # the model was asked again from the fork point
    term.prompt()
    term.type("/detach")
    term.finish()
    assert [
        e["payload"].get("content") for e in events(workspace, original) if e["type"] == "assistant_message"
    ][-1] == "It said hi."  # the original is only read
