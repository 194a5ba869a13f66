"""`duragent chat`, `attach` and `send` in a real pseudo-terminal, against a real `duragent serve`.

The model is the fake OpenAI server (`duragent.testing.fake_llm`) running in a thread of the
test process, so each test scripts exactly what the model says. Assertions are on what the
person sees on the terminal (escape codes removed), on files and on git.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from duragent.testing.fake_llm import FakeLLMServer, ScriptedResponse, error, text, tool_calls
from tests.e2e.terminal import APPROVAL_QUESTION, DURAGENT, PATIENCE, Terminal, client_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


class ThreadedFakeLLM:
    """The fake OpenAI server on its own event loop in a thread, scriptable from the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = FakeLLMServer()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)

    @property
    def url(self) -> str:
        return self.server.url

    def enqueue(self, *responses: ScriptedResponse) -> None:
        self.loop.call_soon_threadsafe(self.server.enqueue, *responses)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def duragent(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A command of ours run to its end in the workspace, outside a terminal (a pipe)."""
    return subprocess.run(
        [*DURAGENT, *args], cwd=workspace, env=client_env(), capture_output=True, text=True, timeout=30
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


AGENT_YAML = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: helper
  description: Test agent
spec:
  model:
    provider: openai
    name: fake-model
    base_url: {base_url}
  system_prompt: You help.
  session:
    on_disconnect: continue
  tools:
    builtin: [bash]
"""


@pytest.fixture
def fake_model() -> Iterator[ThreadedFakeLLM]:
    server = ThreadedFakeLLM()
    yield server
    server.stop()


@pytest.fixture
def workspace(tmp_path: Path, fake_model: ThreadedFakeLLM) -> Path:
    root = tmp_path / "ws"
    agent = root / ".duragent" / "agents" / "helper"
    agent.mkdir(parents=True)
    (root / "duragent.yaml").write_text(
        f"data_dir: ./.duragent\nserver:\n  port: {free_port()}\n"
        "git:\n  commit_debounce: 100ms\n  max_commit_delay: 1s\n"
    )
    (agent / "agent.yaml").write_text(AGENT_YAML.format(base_url=fake_model.url))
    (agent / "policy.yaml").write_text('mode: ask\nallow:\n  - "bash:echo *"\n')
    (root / ".duragent" / ".gitignore").write_text("logs/\nrun/\nclients/\n.locks/\n*.lock\n*.tmp\n")
    return root


def run_info(root: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((root / ".duragent" / "run" / "serve.json").read_text()))
    except (OSError, ValueError):
        return None


def stop_server(root: Path) -> None:
    info = run_info(root)
    if info is None:
        return
    pid = int(info["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def serve_by_hand(root: Path, *args: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """`duragent serve *args` for the workspace (its output in serve.log), once its run file names
    it: the process and that run file."""
    with (root / "serve.log").open("ab") as log:
        process = subprocess.Popen(
            [*DURAGENT, "serve", *args], cwd=root, env=client_env(), stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + PATIENCE
    while (info := run_info(root)) is None or info.get("pid") != process.pid:
        assert process.poll() is None, (root / "serve.log").read_text()
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)  # (polling the run file)
    return process, info


@pytest.fixture
def server(workspace: Path) -> Iterator[dict[str, Any]]:
    """A real `duragent serve` for the workspace, stopped with SIGTERM afterwards."""
    process, info = serve_by_hand(workspace, "--grace", "1")
    yield info
    process.send_signal(signal.SIGTERM)
    process.wait(15)


def test_chat_streams_the_reply_as_it_arrives(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(
        text("Tea is brewed with **hot water** and patience.", chunks=6, chunk_delay=0.15, delay=0.4)
    )
    term = Terminal(["chat"], workspace)
    term.expect("helper · fake-model via openai")
    term.prompt()
    term.type("how is tea made?")
    term.expect("thinking")
    first = term.expect("Tea is")
    assert "patience" not in first
    term.expect("patience")
    term.prompt()
    term.child.sendcontrol("d")
    shown = term.finish()
    # no turn runs when the terminal leaves at its prompt: nothing goes on "in the background"
    assert re.search(r"Detached\. Session s_\w+ has no turn running; it waits for your next message\.", shown)
    assert "in the background" not in shown
    assert re.search(r"Come back with: duragent attach s_\w+", shown)


def test_a_tool_call_is_one_compact_line_with_its_outcome(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(
        tool_calls([("bash", {"command": "echo hello-from-tool"})]), text("The tool said hello.")
    )
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("run echo")
    line = term.expect(r"⚙ bash echo hello-from-tool … ok \d+ ms")
    assert "⚙" in line
    term.expect("The tool said hello.")
    term.prompt()
    term.type("/detach")
    term.finish()


def test_approval_answered_always_is_saved_to_the_policy_and_committed(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(tool_calls([("bash", {"command": "ls -la"})]), text("Listed the folder."))
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("list files")
    term.expect(r"approval needed: bash ls -la")
    term.question()
    term.child.send("a")
    term.expect("Enter confirms")
    term.child.send("\r")
    term.expect("→ allow always")
    term.expect(r"⚙ bash ls -la … ok \d+ ms")
    term.expect("Listed the folder.")
    term.prompt()
    term.child.sendcontrol("d")
    term.finish()
    policy = workspace / ".duragent" / "agents" / "helper" / "policy.yaml"
    assert '"bash:ls -la"' in policy.read_text()
    deadline = time.monotonic() + PATIENCE
    while True:
        log = subprocess.run(
            ["git", "-C", str(workspace / ".duragent"), "log", "--format=%s", "--name-only"],
            capture_output=True,
            text=True,
        ).stdout
        if "agents/helper/policy.yaml" in log:
            break
        assert time.monotonic() < deadline, log
        time.sleep(0.2)


def test_attach_asks_the_approval_send_left_waiting(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    """`send` exits 3 with "decide with: duragent attach ...": this terminal already saw the
    approval_required event, so the replay starts after it; attach must still ask."""
    fake_model.enqueue(tool_calls([("bash", {"command": "touch approved.txt"})]), text("Touched it."))
    sent = duragent(workspace, "send", "touch it")
    assert sent.returncode == 3, sent.stderr
    assert "decide with: duragent attach" in sent.stderr

    term = Terminal(["attach", "--last"], workspace)
    term.expect(r"approval needed: bash touch approved.txt")
    term.question()
    term.child.send("y")
    term.expect("allow once")
    term.expect(r"⚙ bash .*ok \d+ ms")
    term.expect("Touched it.")
    term.prompt()
    term.child.sendcontrol("d")
    term.finish()


def test_first_ctrl_c_cancels_the_turn_and_the_second_detaches(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(text("one two three four five six seven eight nine ten", chunks=10, chunk_delay=0.5))
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("count slowly")
    term.expect("one")
    term.child.sendintr()
    term.expect(r"cancelling… \(Ctrl-C again to detach\)")
    term.expect(r"\[cancelled\]")
    term.prompt()
    term.child.sendintr()
    shown = term.finish()
    assert "Detached." in shown
    assert "ten" not in shown


def test_keys_typed_while_a_reply_streams_are_not_drawn_into_it_and_start_the_next_line(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(
        text("one two three four five six", chunks=6, chunk_delay=0.3), text("Answered the next one.")
    )
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("count")
    term.expect("one")
    term.child.send("next question")
    reply = term.expect("six")
    term.expect("›")
    term.expect("next question")  # typed ahead: the next prompt's line
    term.child.send("\r")
    term.expect("Answered the next one.")
    term.prompt()
    term.child.sendcontrol("d")
    term.finish()

    assert "next question" not in reply
    assert fake_model.server.requests[-1].messages[-1] == {"role": "user", "content": "next question"}


def test_attach_replays_what_a_continue_session_did_while_the_terminal_was_gone(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(
        text("Started. Still working. Finished while you were away.", chunks=6, chunk_delay=0.25)
    )
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("do the long thing")
    term.expect("Started.")
    term.child.close(force=True)  # the terminal window is closed mid-turn
    deadline = time.monotonic() + PATIENCE
    while "Finished while you were away." not in "".join(
        p.read_text() for p in (workspace / ".duragent" / "sessions").glob("*/events.jsonl")
    ):
        assert time.monotonic() < deadline, "the turn did not finish in the background"
        time.sleep(0.1)
    listing = duragent(workspace, "attach", "--list")
    assert re.search(r"s_\w+\s+helper\s+active", listing.stdout), listing.stdout + listing.stderr
    again = Terminal(["attach", "--last"], workspace)
    again.expect("do the long thing")
    again.expect("Finished while you were away.")
    again.prompt()
    again.child.sendcontrol("d")
    again.finish()


def test_session_delete_goes_through_the_running_server_that_has_the_session_loaded(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    """Deleted underneath the server (PostgreSQL allows it), the session lived on there and its
    next message hung; the file store refused while the server ran."""

    fake_model.enqueue(text("Hello."))
    sent = duragent(workspace, "send", "--json", "hi")
    session_id = json.loads(sent.stdout)["session_id"]

    deleted = duragent(workspace, "session", "delete", "--yes", session_id)

    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == f"Deleted session {session_id}.\n"
    assert not (workspace / ".duragent" / "sessions" / session_id).exists()
    again = duragent(workspace, "send", "--session", session_id, "still there?")
    assert again.returncode != 0
    assert "not found" in again.stderr


def test_send_json_in_a_pipe_exits_0_1_or_3(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    def send(*args: str) -> subprocess.CompletedProcess[str]:
        return duragent(workspace, "send", "--json", *args)

    fake_model.enqueue(
        tool_calls([("bash", {"command": "echo hi"})], usage=(10, 2)), text("All good.", usage=(12, 3))
    )
    ok = send("check things")
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert result["reply"] == "All good."
    assert result["status"] == "complete"
    # the turn's usage: both of its model calls
    assert result["usage"] == {"input_tokens": 22, "output_tokens": 5}
    assert [(c["tool"], c["ok"]) for c in result["tool_calls"]] == [("bash", True)]
    assert "\x1b[" not in ok.stdout

    fake_model.enqueue(text("The list goes on and", finish="length"))
    cut = send("--session", result["session_id"], "list everything")
    assert cut.returncode == 1, cut.stderr
    truncated = json.loads(cut.stdout)
    assert (truncated["status"], truncated["reply"]) == ("truncated", "The list goes on and")
    assert truncated["error"]["code"] == "truncated"
    assert "output token limit" in truncated["error"]["message"]

    fake_model.enqueue(error(400, {"error": {"message": "bad request from the fake"}}))
    failed = send("--session", result["session_id"], "break please")
    assert failed.returncode == 1, failed.stderr
    assert json.loads(failed.stdout)["status"] == "failed"

    fake_model.enqueue(tool_calls([("bash", {"command": "rm -rf build"})]))
    waiting = send("--session", result["session_id"], "clean up")
    assert waiting.returncode == 3, waiting.stderr
    pending = json.loads(waiting.stdout)
    assert pending["status"] == "pending_approval"
    assert pending["approval"]["command"] == "rm -rf build"
    assert pending["approval"]["approve_with"]["terminal"] == f"duragent attach {result['session_id']}"
    assert pending["approval"]["call_id"]

    # another message while that call waits for a person: queued behind it, said at once
    behind = send("--session", result["session_id"], "and then?")
    assert behind.returncode == 3, behind.stderr
    queued = json.loads(behind.stdout)
    assert queued["status"] == "queued"
    assert queued["approval"]["call_id"] == pending["approval"]["call_id"]
    assert queued["approval"]["command"] == "rm -rf build"


def test_chat_starts_the_server_in_the_background_and_a_second_chat_reuses_it(
    workspace: Path, fake_model: ThreadedFakeLLM
) -> None:
    try:
        fake_model.enqueue(text("First answer."), text("Second answer."))
        first = Terminal(["chat"], workspace)
        first.expect(r"started the workspace's server \(pid (\d+)")
        first.prompt()
        first.type("hello")
        first.expect("First answer.")
        first.prompt()
        first.child.sendcontrol("d")
        first.finish()
        info = run_info(workspace)
        assert info is not None
        os.kill(int(info["pid"]), 0)  # the server outlived the terminal
        assert (workspace / ".duragent" / "logs" / "serve.log").exists()

        second = Terminal(["chat"], workspace)
        second.expect("helper · fake-model via openai")
        second.expect("resumed")
        second.prompt()
        second.type("again")
        second.expect("Second answer.")
        second.prompt()
        second.child.sendcontrol("d")
        shown = second.finish()
        assert "started the workspace's server" not in shown
        assert run_info(workspace) == info
    finally:
        stop_server(workspace)


def test_chat_follows_the_workspaces_server_when_it_stops_and_starts_again(
    workspace: Path, fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(text("First answer."), text("Answer after the restart."))
    term = Terminal(["chat"], workspace)
    restarted: subprocess.Popen[bytes] | None = None
    try:
        term.expect(r"session s_\w+ · new session")
        term.prompt()
        term.type("hello")
        term.expect("First answer.")
        term.prompt()
        # (`serve stop`, not a signal and a wait: the server is the chat's child, a zombie until reaped)
        stopped = subprocess.run(
            [*DURAGENT, "serve", "stop"], cwd=workspace, env=client_env(), capture_output=True, text=True
        )
        assert stopped.returncode == 0, stopped.stderr
        term.expect("stopped answering; this terminal reconnects")
        # started again by hand, on another port, with nothing happening in the session
        port = free_port()
        with (workspace / "serve.log").open("ab") as log:
            restarted = subprocess.Popen(
                [*DURAGENT, "serve", "--port", str(port)],
                cwd=workspace,
                env=client_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        term.expect(f"reconnected to the server at http://127.0.0.1:{port}")
        term.prompt()
        term.type("still there?")
        term.expect("Answer after the restart.")
        term.prompt()
        term.child.sendcontrol("d")
        term.finish()
    finally:
        if restarted is not None:
            restarted.terminate()
            restarted.wait(15)
        subprocess.run([*DURAGENT, "serve", "stop"], cwd=workspace, env=client_env(), capture_output=True)


def test_a_message_typed_while_the_workspaces_server_is_stopped_starts_it_again(
    workspace: Path, fake_model: ThreadedFakeLLM
) -> None:
    """`chat` starts the server when none runs: so does its next message, instead of failing with
    "cannot reach the server" and losing what was typed."""
    fake_model.enqueue(text("First answer."), text("Answer from the new server."))
    term = Terminal(["chat"], workspace)
    try:
        term.expect(r"session s_\w+ · new session")
        term.prompt()
        term.type("hello")
        term.expect("First answer.")
        term.prompt()
        first = run_info(workspace)
        assert first is not None
        stopped = subprocess.run(
            [*DURAGENT, "serve", "stop"], cwd=workspace, env=client_env(), capture_output=True, text=True
        )
        assert stopped.returncode == 0, stopped.stderr
        term.expect("stopped answering; this terminal reconnects")
        term.prompt()
        term.type("are you there?")
        term.expect(r"started the workspace's server \(pid \d+")
        term.expect("Answer from the new server.")
        term.prompt()
        term.child.sendcontrol("d")
        shown = term.finish()
        assert "cannot reach" not in shown
        again = run_info(workspace)
        assert again is not None
        assert again["pid"] != first["pid"]
    finally:
        subprocess.run([*DURAGENT, "serve", "stop"], cwd=workspace, env=client_env(), capture_output=True)


def test_chat_shows_a_turn_another_client_started_as_it_happens(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(text("Answer for the other terminal.", chunks=3, chunk_delay=0.2))
    term = Terminal(["chat"], workspace)
    session_id = re.findall(r"session (s_\w+)", term.expect(r"session s_\w+ · new session"))[-1]
    term.prompt()
    other = subprocess.run(
        [*DURAGENT, "send", "--session", session_id, "from the other terminal"],
        cwd=workspace,
        env=client_env(DURAGENT_CLIENT_ID="terminal-two"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 0, other.stderr
    term.expect("> from the other terminal")
    term.expect("Answer for the other terminal.")
    term.prompt()
    term.child.sendcontrol("d")
    term.finish()


def test_an_approval_answered_in_another_terminal_releases_this_ones_question(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(tool_calls([("bash", {"command": "touch both.txt"})]), text("Touched it."))
    first = Terminal(["chat"], workspace)
    session_id = re.findall(r"session (s_\w+)", first.expect(r"session s_\w+ · new session"))[-1]
    first.prompt()
    first.type("touch it")
    first.expect(APPROVAL_QUESTION)
    second = Terminal(["attach", session_id], workspace, DURAGENT_CLIENT_ID="terminal-two")
    second.question()
    second.child.send("y")
    second.expect("allow once")

    first.expect("approval decided: allow_once")
    first.expect("Touched it.")
    first.prompt()
    first.child.sendcontrol("d")
    shown = first.finish()
    assert "no pending approval" not in shown
    second.expect("Touched it.")
    second.prompt()
    second.child.sendcontrol("d")
    second.finish()


def test_ctrl_c_after_approving_a_tool_cancels_the_turn_and_kills_the_tool(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    import psutil

    command = "sleep 16.4242"
    fake_model.enqueue(tool_calls([("bash", {"command": command})]), text("never shown"))
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("wait a while")
    term.expect(r"approval needed: bash sleep 16\.4242")
    term.question()
    term.child.send("y")
    term.expect("running bash")

    def sleeping() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["cmdline"]):
            if command in " ".join(process.info["cmdline"] or []):
                found.append(process)
        return found

    deadline = time.monotonic() + PATIENCE
    while not sleeping():
        assert time.monotonic() < deadline, "the approved command never started"
        time.sleep(0.05)
    term.child.sendintr()
    term.expect(r"\[cancelled\]")
    deadline = time.monotonic() + PATIENCE
    while [p for p in sleeping() if p.status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, "the tool's process outlived the cancelled turn"
        time.sleep(0.05)
    term.prompt()
    term.child.sendcontrol("d")
    shown = term.finish()
    assert "never shown" not in shown


def test_ctrl_c_in_send_says_the_turn_goes_on_and_where(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(text("alpha beta gamma delta epsilon zeta", chunks=6, chunk_delay=0.4))
    term = Terminal(["send", "tell me slowly"], workspace)
    term.expect("alpha")
    term.child.sendintr()
    note = term.expect(r"detached: the turn goes on in session s_\w+; duragent attach s_\w+")
    session_id = re.findall(r"session (s_\w+)", note)[-1]
    term.child.read()
    term.child.close()
    assert term.child.exitstatus == 130
    events = workspace / ".duragent" / "sessions" / session_id / "events.jsonl"
    deadline = time.monotonic() + PATIENCE
    while "zeta" not in events.read_text():
        assert time.monotonic() < deadline, "the turn did not go on after the client left"
        time.sleep(0.1)


#: Runs `duragent ARGS` as the console script does, then says which heavy libraries it loaded.
_REPORT_IMPORTS = """
import sys
from duragent.cli import main
try:
    main()
finally:
    heavy = [m for m in ("aiohttp", "typer", "pydantic", "yaml") if m in sys.modules]
    print("loaded: " + (" ".join(heavy) or "nothing heavy"), file=sys.stderr)
"""


#: Runs `duragent ARGS` as the console script does, then says whether any dataclass was made.
_REPORT_DATACLASSES = """
import sys
from duragent.cli import main
try:
    main()
finally:
    print("dataclasses: " + ("loaded" if "dataclasses" in sys.modules else "never"), file=sys.stderr)
"""


def test_a_cold_chat_starts_the_server_without_loading_typer_pydantic_or_aiohttp(
    workspace: Path, fake_model: ThreadedFakeLLM
) -> None:
    """Issue #15.5: with no server running, `chat` starts one through the launcher, as a cold
    `send` does, and imports what its session needs while the server starts."""
    try:
        fake_model.enqueue(text("A first answer."))
        term = Terminal(["chat"], workspace, program=[sys.executable, "-c", _REPORT_IMPORTS])
        started = term.expect(r"started the workspace's server \(pid (\d+)")
        term.expect("helper · fake-model via openai")
        term.prompt()
        term.type("hello")
        term.expect("A first answer.")
        term.prompt()
        term.child.sendcontrol("d")
        shown = term.finish()
        assert "loaded: nothing heavy" in shown
        info = run_info(workspace)
        assert info is not None
        assert f"(pid {info['pid']}" in started
        os.kill(int(info["pid"]), 0)  # the server outlived the terminal
    finally:
        stop_server(workspace)


def test_chat_reaches_its_prompt_without_making_a_dataclass(workspace: Path, server: dict[str, Any]) -> None:
    """Issue #15.5: making a dataclass costs ~3-4M instructions (~1 ms) when its module is
    imported; the records on the way to chat's prompt are NamedTuples and plain classes."""
    term = Terminal(["chat"], workspace, program=[sys.executable, "-c", _REPORT_DATACLASSES])
    term.expect("helper · fake-model via openai")
    term.prompt()
    term.child.sendcontrol("d")
    shown = term.finish()
    assert "has no turn running" in shown
    assert "dataclasses: never" in shown


def test_chat_with_the_server_running_loads_no_typer_pydantic_or_aiohttp(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    """Issue #15.5: to its prompt and through its turns, a warm chat is the terminal and a small client."""
    memory = workspace / ".duragent" / "memory" / "helper" / "MEMORY.md"
    memory.parent.mkdir(parents=True)
    memory.write_text("- The user brews genmaicha.\n")
    fake_model.enqueue(text("A plain answer."))
    reporting = [sys.executable, "-c", _REPORT_IMPORTS]
    term = Terminal(["chat"], workspace, program=reporting)
    term.expect("helper · fake-model via openai")
    term.prompt()
    term.type("hello there")
    term.expect("A plain answer.")
    term.prompt()
    term.type("/history")
    term.expect("> hello there")
    term.expect("A plain answer.")
    term.prompt()
    term.type("/status")
    term.expect(r"on_disconnect +continue")
    term.prompt()
    term.child.sendcontrol("d")
    shown = term.finish()
    assert "has no turn running; it waits for your next message" in shown
    assert "loaded: nothing heavy" in shown

    # /memory reads the memory store the configuration names (it may be PostgreSQL): that loads it.
    again = Terminal(["attach", "--last"], workspace, program=reporting)
    again.prompt()
    again.type("/memory")
    again.expect("The user brews genmaicha.")
    again.prompt()
    again.child.sendcontrol("d")
    shown = again.finish()
    assert "loaded: nothing heavy" not in shown
    assert "aiohttp" not in shown.split("loaded: ")[-1]


def test_retry_runs_a_failed_turn_again_without_typing_it_again(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(error(404, "The model `fake-model` does not exist"), text("Here it is, second time."))
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("tell me the plan")
    term.expect("does not exist")
    term.expect("/retry runs it again")
    term.prompt()
    term.type("/retry")
    term.expect("↻ the turn runs again")
    term.expect("Here it is, second time.")
    term.prompt()
    term.type("/retry")
    term.expect("the last turn did not fail: there is nothing to retry")
    term.prompt()
    term.type("/detach")
    term.finish()
    users = [m for m in fake_model.server.requests[-1].messages if m["role"] == "user"]
    assert [m["content"] for m in users] == ["tell me the plan"]
