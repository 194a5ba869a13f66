"""The workspace's server dies (killed, out of memory) while a terminal client follows a turn.

The message was stored before the reply began, so it is not lost: the client says the server
went away, in which session the turn is, and how to come back to it, instead of a traceback or
an HTTP parser's words.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from duragent.testing.fake_llm import text
from tests.e2e.terminal import DURAGENT, Terminal, client_env
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, fake_model, server, workspace
from tests.waiting import until

__all__ = ["fake_model", "server", "workspace"]  # the fixtures these tests use

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SLOW_REPLY = text("word " * 60, chunks=60, chunk_delay=0.25)


def kill_when_asked(fake_model: ThreadedFakeLLM, server: dict[str, Any]) -> None:
    """SIGKILL the server once the model was asked for the reply (it streams from then on)."""
    asyncio.run(until(lambda: fake_model.server.requests, within=60))
    os.kill(int(server["pid"]), signal.SIGKILL)


def send_cut_off(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM, *options: str
) -> tuple[int, str, str]:
    """`duragent send *options` of a long story, its server killed once the model streams the
    reply: the exit status, stdout and stderr."""
    fake_model.enqueue(SLOW_REPLY)
    sending = subprocess.Popen(
        [*DURAGENT, "send", *options, "tell me a long story"],
        cwd=workspace,
        env=client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    kill_when_asked(fake_model, server)
    out, err = sending.communicate(timeout=60)
    return sending.returncode, out, err


@pytest.mark.parametrize("transport", ["warm", "--server"])
def test_send_says_where_the_turn_is_when_the_server_dies_mid_reply(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM, transport: str
) -> None:
    chosen = ["--server", str(server["url"])] if transport == "--server" else []
    status, _out, err = send_cut_off(workspace, server, fake_model, *chosen)
    assert status == 1, err
    assert "Traceback" not in err
    assert "invalid literal" not in err
    assert "stopped answering in the middle of the turn" in err
    found = re.search(r"duragent attach (s_\w+)", err)
    assert found, err
    assert (workspace / ".duragent" / "sessions" / found.group(1) / "events.jsonl").exists()


def test_send_json_names_the_session_of_a_turn_the_server_dying_cut_off(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    status, out, err = send_cut_off(workspace, server, fake_model, "--json")
    assert status == 1, err
    answer = json.loads(out)
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "unreachable"
    assert answer["session_id"].startswith("s_")
    assert f"duragent attach {answer['session_id']}" in answer["error"]["message"]


def test_chat_gives_the_prompt_back_when_the_server_dies_mid_reply(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    """The terminal waited for the rest of a reply no server would send, with no prompt: now the
    prompt comes back, and a message typed there starts the workspace's server again."""
    fake_model.enqueue(SLOW_REPLY, text("Taken up again."), text("Here again."))
    term = Terminal(["chat"], workspace)
    try:
        term.prompt()
        term.type("tell me a long story")
        term.expect("word")
        os.kill(int(server["pid"]), signal.SIGKILL)
        term.expect("stopped answering; this terminal reconnects")
        term.prompt()
        term.type("are you there?")
        term.expect(r"started the workspace's server \(pid \d+")
        term.expect("Here again.")
        term.prompt()
        term.child.sendcontrol("d")
        shown = term.finish()
        assert "Traceback" not in shown
    finally:
        subprocess.run([*DURAGENT, "serve", "stop"], cwd=workspace, env=client_env(), capture_output=True)
