"""Output into a pipe whose reader left (`duragent send --json … | head`), or into a locale whose
encoding lacks some characters: the command ends as it should, never with a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "DURAGENT_CONFIG")


def duragent(
    cwd: Path, *args: str, stdout: int = subprocess.PIPE, **extra_env: str
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    env.update(NO_COLOR="1", DURAGENT_CLIENT_ID="odd-stdout", **extra_env)
    return subprocess.run(
        [sys.executable, "-m", "duragent", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=240,
    )


def into_a_closed_pipe(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run `duragent ARGS` with stdout a pipe nobody reads any more (`| head` after its lines)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return duragent(cwd, *args, stdout=write_end)
    finally:
        os.close(write_end)


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    """A fresh `init --yes` workspace whose background server (the demo provider's) runs."""
    root = tmp_path / "ws"
    assert duragent(tmp_path, "init", "--yes", str(root)).returncode == 0
    started = duragent(root, "send", "hello")
    assert started.returncode == 0, started.stderr
    yield root
    stopped = duragent(root, "serve", "stop")  # returns once the server's process is gone
    assert stopped.returncode == 0, stopped.stderr


@pytest.mark.parametrize(
    "command",
    [("send", "--json", "hi"), ("send", "hi"), ("attach", "--list"), ("session", "list")],
    ids=["send-json", "send", "attach-list", "session-list"],
)
def test_a_reader_that_left_ends_the_command_with_status_1_and_no_traceback(
    workspace: Path, command: tuple[str, ...]
) -> None:
    done = into_a_closed_pipe(workspace, *command)
    assert done.returncode == 1
    assert b"Traceback" not in done.stderr
    assert b"BrokenPipeError" not in done.stderr


def test_a_reply_stdout_cannot_encode_is_printed_with_question_marks(workspace: Path) -> None:
    done = duragent(workspace, "send", "café ☕", PYTHONIOENCODING="ascii")  # like LANG=en_US.ISO-8859-1
    assert done.returncode == 0, done.stderr
    assert b'You wrote 2 words: "caf? ?"' in done.stdout


def test_json_stays_whole_on_a_stdout_that_cannot_encode_its_characters(workspace: Path) -> None:
    done = duragent(workspace, "send", "--json", "café ☕", PYTHONIOENCODING="latin-1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reply"].startswith('You wrote 2 words: "café ☕"')


def test_session_log_json_stays_whole_on_a_stdout_that_cannot_encode_its_characters(workspace: Path) -> None:
    sent = duragent(workspace, "send", "--json", "café ☕")
    session_id = json.loads(sent.stdout)["session_id"]
    done = duragent(workspace, "session", "log", "--json", session_id, PYTHONIOENCODING="latin-1")
    assert done.returncode == 0, done.stderr
    said = [json.loads(line) for line in done.stdout.splitlines() if b"user_message" in line]
    assert said[-1]["payload"]["content"] == "café ☕"
