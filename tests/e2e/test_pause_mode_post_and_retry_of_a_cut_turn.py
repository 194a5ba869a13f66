"""Pause-mode sessions over plain HTTP: a waiting POST is a client, `session show` says what a paused
session waits for, and a turn a crash cut off is resumed, not retried.

The servers are the real app (in-process, or a real `duragent serve` killed with SIGKILL), the
model the fake LLM server, the background process a real `bash`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import (
    Api,
    ServeProcess,
    cli,
    read_sse,
    serving_background_processes,
    start_serve,
    write_workspace,
)
from tests.waiting import eventually

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


@pytest.fixture
async def served(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[tuple[Api, Path]]:
    """The app serving a workspace whose pause-mode agent `pauser` may start background processes."""
    async with serving_background_processes(tmp_path / "ws", fake_llm.url, "pauser", git=False) as served:
        yield served


async def test_a_waiting_post_to_a_pause_session_with_a_process_end_queued_gets_its_reply(
    served: tuple[Api, Path], fake_llm: FakeLLMServer
) -> None:
    api, data = served
    job = "while [ ! -e go ]; do sleep 0.02; done; echo job finished"
    fake_llm.enqueue(
        tool_calls([("background_process", {"action": "spawn", "command": job, "label": "job"})]),
        text("Started the job."),
    )
    session_id = await api.new_session("pauser")
    path = f"/api/v1/sessions/{session_id}"
    status, pending = await api.call("POST", f"{path}/messages", {"content": "start the job"})
    assert status == 202, pending
    decision = {"call_id": pending["call_id"], "decision": "allow_once"}
    status, done = await api.call("POST", f"{path}/approve", decision)
    assert (status, done["content"]) == (200, "Started the job.")

    # the job ends with nobody attached: its `[process finished]` message waits for a client
    (data / "work" / "pauser" / "go").touch()

    async def end_waiting() -> dict[str, Any] | None:
        _, session = await api.call("GET", path)
        return session if session["status"] == "paused" and session["queued"] == 1 else None

    await eventually(end_waiting, within=20)
    # `session show` says why the session waits, what for, and what continues it
    shown = await asyncio.to_thread(cli, data.parent / "duragent.yaml", "session", "show", session_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert (
        "paused    client disconnected (on_disconnect: pause): it waits for a client "
        f"(duragent attach {session_id} continues it)"
    ) in lines, shown.stdout
    [waiting] = [line for line in lines if line.startswith("waiting ")]
    assert waiting.startswith("waiting   message from background_process: [process finished] proc_")
    assert waiting.endswith(" (job)")
    fake_llm.enqueue(text("Noted: the job finished."), text("Here is your answer."))
    status, reply = await api.call("POST", f"{path}/messages", {"content": "what now?"})
    # the request is the client the session waited for: both turns run, it gets its own reply
    assert (status, reply.get("content")) == (200, "Here is your answer."), reply
    _, history = await api.call("GET", f"{path}/messages")
    kinds = ("user_message", "assistant_message")
    said = [(m["type"], m["content"]) for m in history["messages"] if m["type"] in kinds and m["content"]]
    assert said[-4][1].startswith("[process finished]")
    assert said[-3:] == [
        ("assistant_message", "Noted: the job finished."),
        ("user_message", "what now?"),
        ("assistant_message", "Here is your answer."),
    ]
    _, session = await api.call("GET", path)
    assert (session["status"], session["queued"], session["busy"]) == ("active", 0, False)


async def call(http: aiohttp.ClientSession, method: str, url: str) -> tuple[int, Any]:
    async with http.request(method, url) as response:
        return response.status, await response.json(content_type=None)


@pytest.mark.slow
async def test_retry_of_a_turn_a_crash_cut_off_says_to_resume_it(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    server: ServeProcess = start_serve(config, tmp_path / "serve.log")
    fake_llm.enqueue(text("slow " * 100, chunks=100, chunk_delay=0.05))
    async with aiohttp.ClientSession(headers=server.headers) as http:
        async with http.post(f"{server.url}/api/v1/sessions", json={"agent": "pauser"}) as created:
            session_id = (await created.json())["session_id"]
        base = f"{server.url}/api/v1/sessions/{session_id}"
        async with http.post(f"{base}/stream", json={"content": "first"}) as stream:
            async for event in read_sse(stream):
                if event.event == "token":
                    break
            server.kill()
        server = start_serve(config, tmp_path / "serve2.log")
        base = f"{server.url}/api/v1/sessions/{session_id}"
        try:
            status, problem = await call(http, "POST", f"{base}/retry")
            assert status == 409, problem
            assert problem["detail"] == (
                "the last turn did not fail: it stopped midway (server restarted); resume it instead "
                f"(POST /api/v1/sessions/{session_id}/resume, or /resume in duragent chat and attach)"
            )
            # as it says: resumed, the turn is answered anew (the fake model echoes the message)
            status, resumed = await call(http, "POST", f"{base}/resume")
            assert status == 202, resumed

            async def answered() -> list[str] | None:
                _, page = await call(http, "GET", f"{base}/messages")
                contents = [m["content"] for m in page["messages"] if m["type"] == "assistant_message"]
                return contents or None

            assert await eventually(answered, within=20) == ["echo: first"]
        finally:
            assert await asyncio.to_thread(server.terminate) == 0
