"""Leaving a terminal session and coming back, as a person does it, in a real pseudo-terminal.

A real `duragent serve` and the fake OpenAI model (in a thread of the test process), with the
agent's `on_disconnect` chosen per test. What is asserted is what the terminal shows.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from duragent.testing.fake_llm import text, tool_calls
from tests.e2e.terminal import APPROVAL_QUESTION, PATIENCE, Terminal
from tests.e2e.test_terminal_clients import (
    AGENT_YAML,
    ThreadedFakeLLM,
    duragent,
    fake_model,
    free_port,
    server,
)

__all__ = ["fake_model", "server"]  # fixtures this module's tests use (`server` on its `workspace`)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PAUSED_BY_LEAVING = "client disconnected (on_disconnect: pause)"


@pytest.fixture(params=["pause"])
def on_disconnect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def workspace(tmp_path: Path, fake_model: ThreadedFakeLLM, on_disconnect: str) -> Path:
    root = tmp_path / "ws"
    agent = root / ".duragent" / "agents" / "helper"
    agent.mkdir(parents=True)
    (root / "duragent.yaml").write_text(
        f"data_dir: ./.duragent\nserver:\n  port: {free_port()}\ngit:\n  enabled: false\n"
    )
    yaml = AGENT_YAML.format(base_url=fake_model.url).replace(
        "on_disconnect: continue", f"on_disconnect: {on_disconnect}"
    )
    (agent / "agent.yaml").write_text(yaml)
    (agent / "policy.yaml").write_text('mode: ask\nallow:\n  - "bash:echo *"\n')
    return root


def session_log(workspace: Path) -> str:
    return "".join(p.read_text() for p in (workspace / ".duragent" / "sessions").glob("*/events.jsonl"))


def wait_for_log(workspace: Path, needle: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while needle not in session_log(workspace):
        assert time.monotonic() < deadline, f"{needle!r} never reached the log:\n{session_log(workspace)}"
        time.sleep(0.05)


def leave_mid_reply(workspace: Path, message: str, first_words: str) -> None:
    """Chat, send `message`, and close the terminal window once `first_words` stream."""
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type(message)
    term.expect(first_words)
    term.child.close(force=True)


def test_attaching_to_a_paused_session_follows_the_turn_it_resumes_to_its_end(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(
        tool_calls([("bash", {"command": "echo one"})], text="Starting step one.", chunk_delay=0.3),
        tool_calls([("bash", {"command": "echo two"})], text="Now step two."),
        text("Both steps finished, here is the summary.", chunks=6, chunk_delay=0.1),
    )
    leave_mid_reply(workspace, "do two steps", "Starting")
    wait_for_log(workspace, PAUSED_BY_LEAVING)

    term = Terminal(["attach", "--last"], workspace)
    term.expect(re.escape(f"⏸ session paused: {PAUSED_BY_LEAVING}"))
    resumed = term.expect("Both steps finished, here is the summary.")
    term.prompt()
    term.child.sendcontrol("d")
    term.finish()

    assert "⚙ bash echo two … ok" in resumed
    # The prompt may show (and go again) as the replay ends, before the resumed turn's first
    # event: never once per event, in the middle of the turn.
    assert resumed.count("›") <= 1
    assert "›" not in resumed[resumed.index("Now step two.") :]
    assert len(fake_model.server.requests) == 3


def test_an_approval_asked_while_nobody_was_attached_is_shown_after_what_led_to_it_and_asked_once(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(
        tool_calls([("bash", {"command": "rm -rf build"})], text="I will clean up first.", chunk_delay=0.3),
        text("Removed the build folder.", chunks=4, chunk_delay=0.1),
    )
    leave_mid_reply(workspace, "clean the build folder", "I will")
    wait_for_log(workspace, PAUSED_BY_LEAVING)

    term = Terminal(["attach", "--last"], workspace)
    before_question = term.expect(APPROVAL_QUESTION)
    term.child.send("y")
    after_question = term.expect("Removed the build folder.")
    term.prompt()
    term.child.sendcontrol("d")
    screen = before_question + after_question + term.finish()

    assert before_question.index("I will clean up first.") < before_question.index(
        "⚠ approval needed: bash rm -rf build"
    )
    assert screen.count("⚠ approval needed") == 1
    # (prompt_toolkit may draw the question more than once in place: one line holds it)
    assert len([line for line in screen.splitlines() if re.search(APPROVAL_QUESTION, line)]) == 1
    assert "⚙ bash rm -rf build … ok" in after_question
    assert "›" not in after_question[after_question.index("→ allow once") :]


def test_ctrl_d_during_a_turn_detaches_at_once_and_the_session_pauses_at_the_next_safe_point(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(
        tool_calls(
            [("bash", {"command": "echo one"})],
            text="Working on it, slowly, one small word at a time.",
            chunk_delay=0.3,
        ),
        text("This second step never runs while nobody is attached."),
    )
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("take your time")
    term.expect("Working")
    term.child.sendcontrol("d")
    term.expect(r"Detached\. Session s_\w+ pauses at the next safe point \(on_disconnect: pause\)\.")
    term.finish()
    wait_for_log(workspace, PAUSED_BY_LEAVING)

    assert len(fake_model.server.requests) == 1  # left before the turn's next model call


@pytest.mark.parametrize("on_disconnect", ["continue"], indirect=True)
def test_attach_after_leaving_mid_reply_shows_the_reply_whole_not_from_the_middle(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(
        text(
            "First sentence of the answer. Second sentence. Third sentence, the last.",
            chunks=12,
            chunk_delay=0.3,
        )
    )
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("answer slowly")
    term.expect("First")
    term.child.sendcontrol("d")  # leaves in the middle of the reply
    term.expect(r"Detached\. Session s_\w+ continues in the background \(on_disconnect: continue\)\.")
    term.finish()
    wait_for_log(workspace, "Third sentence, the last.")

    term = Terminal(["attach", "--last"], workspace)
    term.expect("resumed")
    replayed = term.expect("Third sentence, the last.")
    term.prompt()
    term.child.sendcontrol("d")
    term.finish()

    assert "First sentence of the answer. Second sentence." in replayed
    assert replayed.count("First sentence") == 1


def stop_serving(workspace: Path) -> None:
    stopped = duragent(workspace, "serve", "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_attaching_after_a_restart_takes_up_the_turn_a_server_stop_paused(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(
        tool_calls([("bash", {"command": "echo one"})], text="Starting step one.", chunk_delay=0.3),
        text("Step two done after the restart."),
    )
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("do two steps")
    term.expect("Starting")
    # SIGTERM as `serve stop` sends it, but at once: the command's own start-up on a busy machine
    # can outlast the rest of the turn, which then has no safe point left to stop at
    serving = psutil.Process(server["pid"])
    serving.send_signal(signal.SIGTERM)  # stops at the turn's next safe point
    term.expect(re.escape("⏸ session paused: server shutting down (attaching once the server runs again"))
    serving.wait(PATIENCE)
    term.child.sendcontrol("d")
    term.finish()

    try:
        again = Terminal(["attach", "--last"], workspace)  # starts the server again
        again.expect("Step two done after the restart.")  # the stop is over: the turn goes on
        again.prompt()
        again.child.sendcontrol("d")
        again.finish()
    finally:
        stop_serving(workspace)  # the server `attach` started


@pytest.mark.parametrize("on_disconnect", ["continue"], indirect=True)
def test_ctrl_c_at_an_approval_leaves_it_waiting_and_approve_runs_the_call_it_names(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(
        tool_calls([("bash", {"command": "rm -rf build"})], text="Cleaning."),
        text("The build folder is gone."),
    )
    asked = duragent(workspace, "send", "clean the build folder")
    assert asked.returncode == 3, asked.stdout + asked.stderr

    term = Terminal(["attach", "--last"], workspace)
    term.question()
    term.child.sendintr()
    term.expect("left waiting: /approve, /approve always or /deny decides it")
    term.prompt()
    term.type("/approve")
    ran = term.expect("The build folder is gone.")
    term.prompt()
    term.child.sendcontrol("d")
    screen = term.finish()

    assert "⚙ bash rm -rf build … ok" in ran
    assert "Traceback" not in screen


@pytest.mark.parametrize("on_disconnect", ["continue"], indirect=True)
def test_a_message_sent_behind_an_approval_left_waiting_asks_that_approval_again(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(
        tool_calls([("bash", {"command": "rm -rf build"})], text="Cleaning."),
        text("The build folder is gone."),
        text("Hi there."),
    )
    asked = duragent(workspace, "send", "clean the build folder")
    assert asked.returncode == 3, asked.stdout + asked.stderr

    term = Terminal(["attach", "--last"], workspace)
    term.question()
    term.child.sendintr()
    term.expect("left waiting")
    term.prompt()
    term.type("and then say hi")
    term.expect(re.escape("⚠ approval needed: bash rm -rf build"))  # (with what it asks about)
    term.question()
    term.child.send("y")
    term.expect("The build folder is gone.")
    term.expect("Hi there.")
    term.prompt()
    term.child.sendcontrol("d")
    term.finish()


class RecordingTerminal(Terminal):
    """A Terminal that also keeps what the program wrote, escape codes included."""

    def __init__(self, args: list[str], cwd: Path):
        super().__init__(args, cwd)
        self.raw = ""
        read = self.child.read_nonblocking

        def recording(size: int = 1, timeout: float | None = -1) -> str:
            chunk = str(read(size, timeout))
            self.raw += chunk
            return chunk

        self.child.read_nonblocking = recording  # type: ignore[method-assign]


@pytest.mark.parametrize("on_disconnect", ["continue"], indirect=True)
def test_text_pasted_while_a_reply_streams_is_a_paste_not_lines_sent_one_by_one(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    paste_on, paste_off = "\x1b[?2004h", "\x1b[?2004l"
    fake_model.enqueue(text("Streaming slowly for a while, word by word.", chunks=10, chunk_delay=0.3))
    term = RecordingTerminal(["chat"], workspace)
    term.prompt()
    term.type("talk slowly")
    term.expect("Streaming")
    term.expect("word by word.")
    term.prompt()
    term.child.sendcontrol("d")
    term.finish()

    # A terminal in bracketed paste mode marks a paste, so its newlines are not Enter: the mode
    # the prompt turns on must stay on while the reply streams (keys typed then are kept).
    during_reply = term.raw[: term.raw.index("Streaming")]
    last_switch = max(during_reply.rfind(paste_on), during_reply.rfind(paste_off))
    assert during_reply[last_switch:].startswith(paste_on)
