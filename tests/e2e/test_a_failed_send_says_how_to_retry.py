"""`duragent send` whose turn fails (the model answers 500 every time): besides the error, the
person is given the session the failed turn is in and the commands that run it again, so a
script or a person has something to `/retry` or `attach` with; `--json` carries the same."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer, error
from tests.e2e.server_harness import CHILD_ENV, ServeProcess, start_serve, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def server(tmp_path: Path, fake_llm: FakeLLMServer) -> Iterator[ServeProcess]:
    serving = start_serve(write_workspace(tmp_path, fake_llm.url, git=False), tmp_path / "serve.log")
    yield serving
    serving.terminate()


def fail_every_attempt(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(*[error(500, "the model server broke", retry_after=0.0) for _ in range(4)])


async def send(server: ServeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`duragent send` in a child process (awaited: the fake model answers on this event loop)."""
    child = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "duragent", "-c", str(server.config), "send", "--agent", "helper", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **CHILD_ENV},
    )
    out, err = await asyncio.wait_for(child.communicate(), 120)
    return subprocess.CompletedProcess(args, child.returncode or 0, out.decode(), err.decode())


async def test_a_failed_send_names_its_session_and_how_to_run_the_turn_again(
    server: ServeProcess, fake_llm: FakeLLMServer
) -> None:
    fail_every_attempt(fake_llm)

    failed = await send(server, "hello")

    assert failed.returncode == 1, failed.stderr
    assert "the model server broke" in failed.stderr
    (session_id,) = {word.strip("`.,:;") for word in failed.stderr.split() if word.startswith("s_")}
    assert f"duragent attach {session_id}" in failed.stderr
    assert "/retry" in failed.stderr


async def test_a_failed_send_json_carries_how_to_run_the_turn_again(
    server: ServeProcess, fake_llm: FakeLLMServer
) -> None:
    fail_every_attempt(fake_llm)

    failed = await send(server, "--json", "hello")

    assert failed.returncode == 1, failed.stderr
    result = json.loads(failed.stdout)
    session_id = result["session_id"]
    assert result["status"] == "failed"
    assert result["retry"]["terminal"] == f"duragent attach {session_id}, then /retry"
    assert result["retry"]["url"] == f"{server.url}/api/v1/sessions/{session_id}/retry"
