"""Slash commands given an argument they do not take say so, and do nothing else.

`/approve` read any word starting with "a" as "always" (`/approve anyway` wrote an allow rule
to policy.yaml for good) and any other as "once"; `/history ten` showed the last 10 messages as
if nothing had been asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from duragent.testing.fake_llm import text, tool_calls
from tests.e2e.terminal import Terminal
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, fake_model, server, workspace

__all__ = ["fake_model", "server", "workspace"]  # the fixtures these tests use

POLICY = Path(".duragent") / "agents" / "helper" / "policy.yaml"


def test_approve_with_an_argument_other_than_always_decides_nothing(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    policy_before = (workspace / POLICY).read_text()
    fake_model.enqueue(tool_calls([("bash", {"command": "rm -rf build"})]), text("Left it."))
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("clean up")
    term.question()
    term.child.sendintr()  # left waiting, to be decided with a command
    term.prompt()
    term.type("/approve anyway")
    term.expect(r"/approve takes nothing \(once\) or `always`")
    term.prompt()
    term.type("/deny")
    term.expect(r"⚙ bash rm -rf build … denied")
    term.expect("Left it.")
    term.prompt()
    term.child.sendcontrol("d")
    shown = term.finish()

    assert "allow always" not in shown
    assert (workspace / POLICY).read_text() == policy_before


def test_history_with_a_count_that_is_not_a_number_says_what_it_takes(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(text("First answer."))
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("hello")
    term.expect("First answer.")
    term.prompt()
    term.type("/history ten")
    shown = term.expect(r"/history takes a number of messages.*")
    term.prompt()
    term.child.sendcontrol("d")
    term.finish()

    assert "> hello" not in shown
