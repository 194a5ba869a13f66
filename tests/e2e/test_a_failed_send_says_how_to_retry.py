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
from typing import Any

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, broken_stream, error, text, tool_calls
from tests.e2e.server_harness import CHILD_ENV, ServeProcess, start_serve, write_workspace
from tests.waiting import eventually

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


async def test_a_failed_send_json_reports_the_tokens_its_turn_used(
    server: ServeProcess, fake_llm: FakeLLMServer
) -> None:
    # The model was paid for every call of the turn, the empty reply's too: `usage: {}` said none.
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo hi"})], usage=(3, 2)), text("", usage=(7, 5)))

    failed = await send(server, "--json", "hello")

    assert failed.returncode == 1, failed.stderr
    result = json.loads(failed.stdout)
    assert result["status"] == "failed"
    assert "retry the turn" in result["error"]["message"]
    assert result["usage"] == {"input_tokens": 10, "output_tokens": 7}


async def test_a_send_whose_reply_was_cut_off_is_run_again_by_the_retry_it_names(
    server: ServeProcess, fake_llm: FakeLLMServer
) -> None:
    # `send` named a /retry that the server then refused ("send the message again"): the person
    # could only send it again, and the message stood twice in the history.
    fake_llm.enqueue(broken_stream(2, "one two three four", chunks=4), text("one two three four"))

    failed = await send(server, "--json", "count to four")

    assert failed.returncode == 1, failed.stderr
    result = json.loads(failed.stdout)
    assert "marked partial" in result["error"]["message"], result
    session = f"{server.url}/api/v1/sessions/{result['session_id']}"
    async with aiohttp.ClientSession(headers=server.headers) as http:
        async with http.post(f"{session}/retry") as answered:
            assert answered.status == 202, await answered.text()

        async def answered_whole() -> list[dict[str, Any]] | None:
            async with http.get(f"{session}/messages") as response:
                messages = (await response.json())["messages"]
            return messages if any(m.get("content") == "one two three four" for m in messages) else None

        messages = await eventually(answered_whole, within=30)
    assert [m["content"] for m in messages if m["type"] == "user_message"] == ["count to four"]
    assert [m["role"] for m in fake_llm.requests[-1].messages] == ["system", "user"]
