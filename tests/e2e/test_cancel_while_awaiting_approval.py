"""Cancelling a turn that waits for an approval ends that turn, and the messages queued behind
it run (docs/cli.md: a message sent to a session whose turn waits for an approval "runs once
the turn is over").

Before the fix, `LiveSession._end_turn` settled the status only from `active`/`running`: the
session stayed `paused` with reason "awaiting approval", and the queued messages waited until
another message or a `/resume` arrived.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from duragent.testing.fake_llm import text, tool_calls
from tests.e2e.terminal import Terminal
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, duragent
from tests.e2e.test_terminal_reattach import (  # noqa: F401  (fixtures)
    fake_model,
    on_disconnect,
    server,
    workspace,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.mark.parametrize("on_disconnect", ["continue"], indirect=True)
def test_cancelling_a_turn_waiting_for_approval_runs_the_message_queued_behind_it(
    workspace: Path,  # noqa: F811  (the fixtures imported above)
    server: dict[str, Any],  # noqa: F811
    fake_model: ThreadedFakeLLM,  # noqa: F811
) -> None:
    fake_model.enqueue(
        tool_calls([("bash", {"command": "rm -rf build"})], text="Cleaning."), text("Hi there.")
    )
    asked = duragent(workspace, "send", "clean the build folder")
    assert asked.returncode == 3, asked.stdout + asked.stderr
    queued = duragent(workspace, "send", "and then say hi")
    assert queued.returncode == 3, queued.stdout + queued.stderr  # queued behind the approval

    term = Terminal(["attach", "--last"], workspace)
    term.question()
    term.child.sendintr()
    term.expect("left waiting")
    term.prompt()
    term.type("/cancel")
    term.expect(r"\[cancelled\]")
    term.expect("Hi there.")
    term.prompt()
    term.child.sendcontrol("d")
    term.finish()
