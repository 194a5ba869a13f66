"""Leaving a `pause` session in the middle of a turn while another terminal still follows it.

The server pauses a `pause` session when its *last* client leaves. The terminal that left said
"pauses at the next safe point" all the same, while the turn went on to its end in the other
terminal: it now says the session goes on, and why.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from duragent.testing.fake_llm import text, tool_calls
from tests.e2e.terminal import Terminal
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, fake_model, server, workspace

__all__ = ["fake_model", "server", "workspace"]  # the fixtures this test uses

AGENT = Path(".duragent") / "agents" / "helper"


@pytest.fixture
def go(workspace: Path, tmp_path: Path) -> Path:
    """The agent pauses when its last client leaves (set before the server starts), and has a
    tool that runs until the file this returns exists."""
    agent_yaml = workspace / AGENT / "agent.yaml"
    agent_yaml.write_text(agent_yaml.read_text().replace("on_disconnect: continue", "on_disconnect: pause"))
    go = tmp_path / "go"
    tool = workspace / ".duragent" / "tools" / "look_around"
    tool.mkdir(parents=True)
    (tool / "run").write_text(f"#!/bin/sh\nwhile [ ! -e {go} ]; do sleep 0.05; done\necho looked\n")
    (tool / "run").chmod(0o755)
    policy = workspace / AGENT / "policy.yaml"
    policy.write_text(policy.read_text() + '  - "look_around:*"\n')
    return go


def two_terminals_in_a_turn(workspace: Path, fake_model: ThreadedFakeLLM) -> tuple[str, Terminal, Terminal]:
    """`chat` in a new session and `attach` to it in a second terminal; the first then sends a
    message whose turn runs `look_around` until `go` exists. (session id, first, second)"""
    fake_model.enqueue(tool_calls([("look_around", {"args": "here"})]), text("Looked around, all done."))
    first = Terminal(["chat"], workspace)
    header = first.expect(r"session (s_\w+) · new session")
    session_id = re.findall(r"s_\w+", header)[-1]
    first.prompt()
    second = Terminal(["attach", session_id], workspace, DURAGENT_CLIENT_ID="terminal-two")
    second.prompt()
    first.type("look around")
    return session_id, first, second


def test_leaving_a_pause_session_another_terminal_follows_says_it_goes_on(
    workspace: Path, go: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    session_id, first, second = two_terminals_in_a_turn(workspace, fake_model)
    first.expect("running look_around")
    second.expect("running look_around")
    first.child.sendcontrol("d")
    farewell = first.finish()
    go.touch()
    second.expect(r"⚙ look_around args=here … ok")
    second.expect("Looked around, all done.")
    second.prompt()
    second.child.sendcontrol("d")
    watched = second.finish()

    assert "pauses at the next safe point" not in farewell, farewell
    assert re.search(rf"Detached\. Session {session_id} goes on: 1 other client still attached", farewell)
    assert "paused" not in watched


def test_leaving_while_another_terminal_s_turn_runs_counts_that_terminal_once(
    workspace: Path, go: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    """The other terminal's event stream and the message it is sending are one client: it said
    "2 other clients still attached"."""
    session_id, first, second = two_terminals_in_a_turn(workspace, fake_model)
    second.expect("running look_around")
    second.child.sendcontrol("d")
    farewell = second.finish()
    go.touch()
    first.expect("Looked around, all done.")
    first.prompt()
    first.child.sendcontrol("d")
    first.finish()

    assert re.search(rf"Detached\. Session {session_id} goes on: 1 other client still attached", farewell)
