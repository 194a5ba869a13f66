"""`duragent send` whose message waits behind other turns says so, instead of nothing.

Behind another client's turn, or in a session whose turn a server's death cut off: a pause-mode
session (`on_disconnect: pause`) is then paused with reason `server restarted` until a client
comes. `send` is one: the stopped turn is taken up first and the message waits behind it. `send`
says so on stderr (stdout stays the reply), then prints its reply.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from duragent.testing.fake_llm import ScriptedResponse, held, text, tool_calls
from tests.e2e import test_terminal_clients as clients
from tests.e2e.terminal import DURAGENT, PATIENCE, client_env
from tests.e2e.test_a_server_killed_mid_turn import send_cut_off
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, fake_model, run_info, serve_by_hand, stop_server
from tests.waiting import until

__all__ = ["fake_model"]  # the fixtures these tests use

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def workspace(tmp_path: Path, fake_model: ThreadedFakeLLM) -> Iterator[Path]:
    """The terminal tests' workspace, its agent's sessions pausing when their last client leaves."""
    root = tmp_path / "ws"
    agent = root / ".duragent" / "agents" / "helper"
    agent.mkdir(parents=True)
    (root / "duragent.yaml").write_text(f"data_dir: ./.duragent\nserver:\n  port: {clients.free_port()}\n")
    yaml = clients.AGENT_YAML.format(base_url=fake_model.url)
    (agent / "agent.yaml").write_text(yaml.replace("on_disconnect: continue", "on_disconnect: pause"))
    yield root
    # Stopped and reaped here: a server this test started is its child, a zombie once it exits,
    # and a zombie's pid still answers the signal `stop_server` polls with (a minute per test).
    for process in _STARTED.pop(root, []):
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    stop_server(root)  # (one a `send` started, if any)


#: The servers each workspace's test started, to reap when it ends.
_STARTED: dict[Path, list[subprocess.Popen[bytes]]] = {}


def start_server(root: Path) -> dict[str, Any]:
    """`duragent serve` for the workspace, once its run file names it."""
    process, info = serve_by_hand(root, "--grace", "1")
    _STARTED.setdefault(root, []).append(process)
    return info


def cut_off_turn(root: Path, fake_model: ThreadedFakeLLM) -> str:
    """A session whose turn the server's death stopped midway; the server runs again."""
    _status, _out, err = send_cut_off(root, start_server(root), fake_model)
    found = re.search(r"duragent attach (s_\w+)", err)
    assert found, err
    start_server(root)
    shown = subprocess.run(
        [*DURAGENT, "session", "show", found.group(1)],
        cwd=root,
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "server restarted" in shown.stdout, shown.stdout + shown.stderr
    return found.group(1)


@pytest.mark.parametrize("transport", ["warm", "--server"])
def test_send_to_a_session_a_restart_paused_says_its_message_waits_then_replies(
    workspace: Path, fake_model: ThreadedFakeLLM, transport: str
) -> None:
    session = cut_off_turn(workspace, fake_model)
    fake_model.enqueue(text("The story, taken up again."), text("Here again."))
    chosen = ["--server", str(run_info(workspace)["url"])] if transport == "--server" else []  # type: ignore[index]
    sent = subprocess.run(
        [*DURAGENT, "send", *chosen, "--session", session, "are you there?"],
        cwd=workspace,
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    print(sent.returncode, sent.stdout, sent.stderr)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip() == "Here again."
    assert "queued behind 1 turn" in sent.stderr


def send_behind_a_held_turn(
    workspace: Path, fake_model: ThreadedFakeLLM, first_reply: ScriptedResponse, *then: ScriptedResponse
) -> tuple[str, subprocess.Popen[str], str, str]:
    """A `send --new` whose model reply (`first_reply`) is held until a second `send` to its
    session said it waits behind that turn; then released (`then`: the model's next replies).
    (session, the second `send` ended, its stdout, its stderr)."""
    server = start_server(workspace)
    release = threading.Event()
    fake_model.enqueue(held(release, first_reply), *then)
    first = subprocess.Popen(
        [*DURAGENT, "send", "--new", "tell me a story"],
        cwd=workspace,
        env=client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    second_err = workspace / "second.err"
    second = None
    try:
        asyncio.run(until(lambda: fake_model.server.requests, within=60))
        session = next((workspace / ".duragent" / "sessions").iterdir()).name
        with second_err.open("w") as err:
            second = subprocess.Popen(
                [*DURAGENT, "send", "--server", str(server["url"]), "--session", session, "and then?"],
                cwd=workspace,
                env=client_env(),
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        said = second
        asyncio.run(until(lambda: "queued behind" in second_err.read_text() or said.poll() is not None, 60))
        release.set()
        out, _ = second.communicate(timeout=60)
    finally:
        release.set()  # (also when a wait failed: the first turn ends, nothing is left hanging)
        first.communicate(timeout=60)
        if second is not None and second.poll() is None:
            second.kill()
            second.wait()
    return session, second, out, second_err.read_text()


def test_send_behind_another_clients_turn_says_it_is_queued(
    workspace: Path, fake_model: ThreadedFakeLLM
) -> None:
    story = text("word " * 60, chunks=60)
    session, second, out, err = send_behind_a_held_turn(workspace, fake_model, story, text("Second reply."))
    assert second.returncode == 0, err
    assert out.strip() == "Second reply."
    assert f"your message is queued behind 1 turn(s) of session {session}" in err


def test_send_to_a_paused_session_waiting_for_an_approval_queues_its_message_and_says_so(
    workspace: Path, fake_model: ThreadedFakeLLM
) -> None:
    """The session paused when `send` left its approval unanswered: a second `send` attaching
    alone would wait, silent, behind a turn nobody can answer from there (up to 10 minutes)."""
    start_server(workspace)
    fake_model.enqueue(tool_calls([("bash", {"command": "ls -la"})]))
    asked = subprocess.run(
        [*DURAGENT, "send", "--new", "list the files"],
        cwd=workspace,
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert asked.returncode == 3, asked.stderr
    session = re.findall(r"duragent attach (s_\w+)", asked.stderr)[-1]
    asyncio.run(until(lambda: "paused" in _status(workspace, session), within=30))

    again = subprocess.run(
        [*DURAGENT, "send", "--session", session, "and one more thing"],
        cwd=workspace,
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert again.returncode == 3, again.stdout + again.stderr
    assert "approval needed" in again.stderr
    assert "queued behind this decision" in again.stderr


def test_send_behind_a_turn_that_then_asks_for_an_approval_says_so_at_once(
    workspace: Path, fake_model: ThreadedFakeLLM
) -> None:
    """The turn ahead asks only after the second message was queued: the second `send` is told
    in its stream and says so, rather than waiting, silent, for a decision it cannot give."""
    asking = tool_calls([("bash", {"command": "ls -la"})])  # the turn ahead asks, once released
    session, second, _out, said_there = send_behind_a_held_turn(workspace, fake_model, asking)
    assert second.returncode == 3, said_there
    assert "approval needed" in said_there
    assert "ls -la" in said_there
    assert (
        f"your message is queued behind this decision; decide with: duragent attach {session}" in said_there
    )
    assert "and then?" in _queued_messages(workspace, session)


def _queued_messages(root: Path, session: str) -> str:
    """The session's log as text: a queued message is stored before its turn runs."""
    return (root / ".duragent" / "sessions" / session / "events.jsonl").read_text()


def _status(root: Path, session: str) -> str:
    shown = subprocess.run(
        [*DURAGENT, "session", "show", session],
        cwd=root,
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    return shown.stdout
