"""A model that numbers its tool calls per reply (`call_0`, `call_1`... again in every reply, as
some OpenAI-compatible servers and the fake model do) must not confuse a turn stopped while asking
for approval with an earlier turn whose call of the same id has a result.

A call is known by its id within its own batch (`SessionState` matches a result to the most
recent call of its id still without one): before, an earlier turn's result for `call_0` hid the
stopped turn's `call_0`, so reattaching resumed the session but not its turn, and the approval
the terminal asked could never be answered (`POST .../approve` answered 409 after 30 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from duragent.testing.fake_llm import ScriptedCall, text, tool_calls
from tests.e2e.terminal import Terminal
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, duragent
from tests.e2e.test_terminal_reattach import (  # noqa: F401  (fixtures)
    PAUSED_BY_LEAVING,
    fake_model,
    leave_mid_reply,
    on_disconnect,
    server,
    wait_for_log,
    workspace,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_an_approval_left_by_a_pause_is_answerable_when_an_earlier_turn_used_the_same_call_id(
    workspace: Path,  # noqa: F811  (the fixtures imported above)
    server: dict[str, Any],  # noqa: F811
    fake_model: ThreadedFakeLLM,  # noqa: F811
) -> None:
    fake_model.enqueue(
        tool_calls([ScriptedCall("bash", {"command": "echo one"}, "call_0")], text="Looking."),
        text("The first turn is done."),
        tool_calls(
            [ScriptedCall("bash", {"command": "rm -rf build"}, "call_0")],
            text="I will clean up first.",
            chunk_delay=0.3,
        ),
        text("Removed the build folder."),
    )
    first = duragent(workspace, "send", "look around")
    assert first.returncode == 0, first.stdout + first.stderr
    leave_mid_reply(workspace, "clean the build folder", "I will")
    wait_for_log(workspace, PAUSED_BY_LEAVING)

    term = Terminal(["attach", "--last"], workspace)
    term.question()
    term.child.send("y")
    term.expect("Removed the build folder.")
    term.prompt()
    term.child.sendcontrol("d")
    term.finish()
