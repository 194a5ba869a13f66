"""Leaving `chat` after the workspace's server died mid-turn says what is true: no server runs
the turn now (it neither "pauses at the next safe point" nor "continues in the background"),
the session is saved and its unfinished turn goes on once the server runs again."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from duragent.testing.fake_llm import text
from tests.e2e.terminal import Terminal
from tests.e2e.test_a_server_killed_mid_turn import SLOW_REPLY
from tests.e2e.test_send_says_when_its_message_waits import start_server, workspace
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, fake_model

__all__ = ["fake_model", "workspace"]  # the fixtures these tests use

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.parametrize("leaving", ["at once", "once told"])
def test_leaving_chat_after_the_server_died_mid_turn_says_no_server_runs_it(
    workspace: Path, fake_model: ThreadedFakeLLM, leaving: str
) -> None:
    server = start_server(workspace)
    fake_model.enqueue(SLOW_REPLY)
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("tell me a long story")
    term.expect("word")
    os.kill(int(server["pid"]), signal.SIGKILL)
    if leaving == "once told":
        term.expect("stopped answering; this terminal reconnects")
        term.prompt()
    term.child.sendcontrol("d")
    shown = term.finish()
    farewell = shown[shown.rindex("Detached.") :]
    assert "pauses" not in farewell
    assert "in the background" not in farewell
    assert "has no turn running" not in farewell
    assert "The server stopped answering" in farewell
    assert "its unfinished turn goes on once the server runs again" in farewell
    assert "Come back with: duragent attach s_" in farewell


@pytest.mark.parametrize(
    ("command", "answer"), [("/status", "attached"), ("/history 2", "Hello."), ("/sessions", r"\* s_")]
)
def test_a_slash_command_after_the_server_died_keeps_chat_open(
    workspace: Path, fake_model: ThreadedFakeLLM, command: str, answer: str
) -> None:
    """A slash command starts the workspace's server again as a message does, and a failure is
    said at the prompt: it never closes the terminal (it did, with `error: cannot reach`)."""
    server = start_server(workspace)
    fake_model.enqueue(text("Hello."))
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("hi")
    term.expect("Hello.")
    term.prompt()
    os.kill(int(server["pid"]), signal.SIGKILL)
    term.expect("stopped answering; this terminal reconnects")
    term.prompt()
    term.type(command)
    term.expect("started the workspace's server")  # as a message would
    term.expect(answer)  # and the command answered by it
    term.prompt()  # still in chat
    term.type("/detach")
    shown = term.finish()
    assert "error: cannot reach" not in shown
    assert "Come back with: duragent attach s_" in shown
