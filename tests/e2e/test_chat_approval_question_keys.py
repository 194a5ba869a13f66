"""The approval question of `duragent chat` answers to y, a and n only, pressed while it is shown.

Keys typed ahead while a turn runs are the person's next message: handed to the question, the
first `a` in "and then" allowed `rm -rf` always and wrote that rule to policy.yaml. And a line
typed at the question with Enter was posted as the decision (an HTTP 400), which left the call
waiting with no question on screen and no prompt.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from duragent.testing.fake_llm import text, tool_calls
from tests.e2e.terminal import Terminal
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, duragent, fake_model, server, workspace

__all__ = ["fake_model", "server", "workspace"]  # the fixtures these tests use

POLICY = Path(".duragent") / "agents" / "helper" / "policy.yaml"


def test_keys_typed_ahead_during_a_turn_do_not_answer_its_approval_question(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM, tmp_path: Path
) -> None:
    # The turn's first tool (allowed) runs until the keys are typed; its second waits for approval.
    go = tmp_path / "go"
    tool = workspace / ".duragent" / "tools" / "look_around"
    tool.mkdir(parents=True)
    (tool / "run").write_text(f"#!/bin/sh\nwhile [ ! -e {go} ]; do sleep 0.05; done\necho looked\n")
    (tool / "run").chmod(0o755)
    policy = workspace / POLICY
    policy.write_text(policy.read_text() + '  - "look_around:*"\n')
    policy_before = policy.read_text()
    fake_model.enqueue(
        tool_calls([("look_around", {"args": "here"})]),
        tool_calls([("bash", {"command": "rm -rf build"})]),
        text("Left it alone."),
    )
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("clean up")
    term.expect("running look_around")
    term.child.send("and then")  # the next message, typed ahead
    go.touch()
    term.expect(r"approval needed: bash rm -rf build")
    term.question()
    term.child.send("n")
    term.expect("→ deny")
    term.expect(r"⚙ bash rm -rf build … denied")
    term.expect("Left it alone.")
    term.expect("›")
    term.expect("and then")  # still the next prompt's line, whole
    term.child.sendcontrol("u")
    term.child.sendcontrol("d")
    shown = term.finish()

    assert "allow always" not in shown
    assert "allow once" not in shown
    assert policy.read_text() == policy_before


def test_other_keys_and_enter_at_the_approval_question_are_ignored(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(tool_calls([("bash", {"command": "ls -la"})]), text("Listed the folder."))
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("list files")
    term.expect(r"approval needed: bash ls -la")
    term.question()
    term.child.send("hello\r")
    term.child.send("y")
    term.expect("→ allow once")
    term.expect(r"⚙ bash ls -la … ok \d+ ms")
    term.expect("Listed the folder.")
    term.prompt()
    term.child.sendcontrol("d")
    shown = term.finish()

    assert "hello" not in shown
    assert "invalid" not in shown


def test_a_word_typed_at_the_approval_question_does_not_allow_the_call_always(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    # "a" writes a rule into the policy for good: only Enter after it confirms, and any other key
    # (the "n" of "and") goes back to the question, not to a decision
    policy = workspace / POLICY
    policy_before = policy.read_text()
    fake_model.enqueue(tool_calls([("bash", {"command": "rm -rf build"})]), text("Left it alone."))
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("clean up")
    term.expect(r"approval needed: bash rm -rf build")
    term.question()
    term.child.send("and")  # "a" asks to confirm, "n" goes back to the question, "d" does nothing
    term.child.send("n")
    term.expect("→ deny")
    term.expect("Left it alone.")
    term.prompt()
    term.child.sendcontrol("d")
    shown = term.finish()

    assert "→ allow always" not in shown
    assert "→ allow once" not in shown
    assert policy.read_text() == policy_before


def test_ctrl_d_at_the_approval_question_detaches_and_the_call_waits(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    """Ctrl-D detaches anywhere, during a turn too (docs/cli.md): at the question it only said
    "left waiting" and stayed, as Ctrl-C does."""
    fake_model.enqueue(tool_calls([("bash", {"command": "ls -la"})]), text("Listed the folder."))
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("list files")
    term.expect(r"approval needed: bash ls -la")
    term.question()
    term.child.sendcontrol("d")
    shown = term.finish()

    assert "Detached. Session s_" in shown
    assert "waits for a decision on bash ls -la: attaching asks it again" in shown
    assert "left waiting" not in shown
    session = re.search(r"duragent attach (s_\w+)", shown)
    assert session, shown
    info = json.loads(duragent(workspace, "session", "show", session.group(1), "--json").stdout)
    assert [a["command"] for a in info["pending_approvals"]] == ["ls -la"]
