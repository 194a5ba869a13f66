"""What survives a crash or a client leaving: queued messages, pending approvals, turn metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, error, text, tool_calls
from tests.e2e.server_harness import AGENT_YAML, Api, ServeProcess, read_sse, start_serve, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as response:
        return response.status, await response.json(content_type=None)


async def history(http: aiohttp.ClientSession, server: ServeProcess, session_id: str) -> list[dict[str, Any]]:
    _, body = await call(http, "GET", f"{server.url}/api/v1/sessions/{session_id}/messages?limit=100")
    messages: list[dict[str, Any]] = body["messages"]
    return messages


async def wait_until(check: Any, seconds: float = 10.0) -> Any:
    """Poll the async `check` until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


@dataclass
class AskingAgain:
    """A turn's tool call that waited for approval across a restart, asked again by the new server."""

    http: aiohttp.ClientSession
    server: ServeProcess
    session_id: str
    call_id: str

    async def approve(self) -> tuple[int, Any]:
        url = f"{self.server.url}/api/v1/sessions/{self.session_id}/approve"
        return await call(self.http, "POST", url, {"call_id": self.call_id, "decision": "allow_once"})

    async def tool_results(self) -> list[dict[str, Any]]:
        messages = await history(self.http, self.server, self.session_id)
        return [message for message in messages if message["type"] == "tool_result"]


@contextlib.asynccontextmanager
async def asked_again_after_a_restart(
    tmp_path: Path, config: Path, fake_llm: FakeLLMServer, tool_call: tuple[str, Any], *, crash: bool
) -> AsyncIterator[AskingAgain]:
    """A message whose turn makes `tool_call`, which waits for approval; the server stopped
    (killed if `crash`, else stopped as on SIGTERM) and started again; once the new server asks
    for the call again, the caller answers it. The new server is stopped after."""
    server = start_serve(config, tmp_path / "serve.log")
    fake_llm.enqueue(tool_calls([tool_call]))
    async with aiohttp.ClientSession(headers=server.headers) as http:
        _, created = await call(http, "POST", f"{server.url}/api/v1/sessions", {"agent": "helper"})
        session_id = created["session_id"]
        status, pending = await call(
            http, "POST", f"{server.url}/api/v1/sessions/{session_id}/messages", {"content": "do it"}
        )
        assert status == 202, pending
        if crash:
            server.kill()
        else:
            assert await asyncio.to_thread(server.terminate) == 0
        server = start_serve(config, tmp_path / "serve2.log")
        try:

            async def asked_again() -> list[str]:
                _, session = await call(http, "GET", f"{server.url}/api/v1/sessions/{session_id}")
                return [a["call_id"] for a in session.get("pending_approvals") or []]

            assert await wait_until(asked_again) == [pending["call_id"]], server.log()
            yield AskingAgain(http, server, session_id, pending["call_id"])
        finally:
            assert await asyncio.to_thread(server.terminate) == 0


@pytest.mark.slow
async def test_messages_queued_behind_a_turn_are_answered_in_order_after_a_crash(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    server = start_serve(config, tmp_path / "serve.log")
    fake_llm.enqueue(text("slow " * 100, chunks=100, chunk_delay=0.05))
    async with aiohttp.ClientSession(headers=server.headers) as http:
        _, created = await call(http, "POST", f"{server.url}/api/v1/sessions", {"agent": "helper"})
        session_id = created["session_id"]
        base = f"{server.url}/api/v1/sessions/{session_id}"
        async with http.post(f"{base}/stream", json={"content": "first"}) as stream:
            async for event in read_sse(stream):
                if event.event == "token":
                    break
            queued = [
                await call(http, "POST", f"{base}/messages", {"content": c}) for c in ("second", "third")
            ]
            assert queued == [
                (202, {"status": "queued", "position": 1}),
                (202, {"status": "queued", "position": 2}),
            ]
            server.kill()
        # after the restart the fake model echoes each user message: "echo: <message>"
        server = start_serve(config, tmp_path / "serve2.log")
        try:

            async def answered() -> list[tuple[str, str]]:
                pairs = [(m["type"], m["content"]) for m in await history(http, server, session_id)]
                return pairs if ("assistant_message", "echo: third") in pairs else []

            pairs = await wait_until(answered)
            assert pairs == [
                ("user_message", "first"),
                ("assistant_message", "echo: first"),
                ("user_message", "second"),
                ("assistant_message", "echo: second"),
                ("user_message", "third"),
                ("assistant_message", "echo: third"),
            ], server.log()
            events = (tmp_path / "data" / "sessions" / session_id / "events.jsonl").read_text()
            assert events.count('"message_queued"') == 2
        finally:
            assert await asyncio.to_thread(server.terminate) == 0


@pytest.mark.slow
async def test_an_approval_pending_at_a_crash_can_be_answered_after_the_restart(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    # the test policy allows `echo` only: `printf` asks a person
    printf = ("bash", {"command": "printf approved-after-restart"})
    async with asked_again_after_a_restart(tmp_path, config, fake_llm, printf, crash=True) as waiting:
        fake_llm.enqueue(text("it printed approved-after-restart"))
        status, done = await waiting.approve()
        assert status == 200, done
        assert done["content"] == "it printed approved-after-restart"
        results = await waiting.tool_results()
        assert [(r["payload"]["ok"], r["content"]) for r in results] == [(True, "approved-after-restart")]


async def test_metrics_count_turns_by_outcome_and_their_tokens(api: Api, fake_llm: FakeLLMServer) -> None:
    session_id = await api.new_session()
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo hi"})], usage=(7, 3)), text("ok", usage=(11, 2)))
    status, _reply = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "go"})
    assert status == 200
    fake_llm.enqueue(error(400, "bad request"))
    status, _problem = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "fail"})
    assert status == 502
    _, metrics = await api.call("GET", "/metrics")
    lines = set(metrics.splitlines())
    assert 'duragent_turns_total{outcome="done"} 1.0' in lines
    assert 'duragent_turns_total{outcome="error"} 1.0' in lines
    assert 'duragent_tokens_total{direction="input"} 18.0' in lines
    assert 'duragent_tokens_total{direction="output"} 5.0' in lines
    assert "duragent_turn_duration_seconds_count 2.0" in lines


async def test_a_client_hanging_up_on_a_waiting_message_detaches_at_once(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    session_id = await api.new_session()
    fake_llm.enqueue(text("long " * 40, chunks=40, chunk_delay=0.05))
    path = f"/api/v1/sessions/{session_id}"
    waiting = asyncio.create_task(api.call("POST", f"{path}/messages", {"content": "take your time"}))

    async def attached() -> bool:
        _, session = await api.call("GET", path)
        return bool(session["busy"] and session["attached"] == 1)

    assert await wait_until(attached, 5)
    waiting.cancel()  # closes the connection while the turn runs
    hung_up = time.monotonic()

    async def detached() -> dict[str, Any] | None:
        _, session = await api.call("GET", path)
        return session if session["attached"] == 0 else None

    session = await wait_until(detached, 5)
    assert session is not None
    assert time.monotonic() - hung_up < 1.5
    assert session["status"] == "running"  # on_disconnect: continue goes on without the client

    async def finished() -> bool:
        _, body = await api.call("GET", f"{path}/messages")
        return bool(body["messages"][-1]["type"] == "assistant_message")

    assert await wait_until(finished, 5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tool", "arguments", "answer"),
    [
        ("schedule", {"action": "create", "in": "1h", "message": "stand up"}, "created one-shot schedule"),
        ("background_process", {"action": "list"}, "no background processes"),
    ],
)
async def test_a_server_tool_approved_after_a_restart_reaches_the_servers_scheduler_and_processes(
    tmp_path: Path, fake_llm: FakeLLMServer, tool: str, arguments: dict[str, Any], answer: str
) -> None:
    # The restarted server's recovery resumes the turn (which makes its tool context) before it
    # starts the scheduler and the process manager: the call, approved after, must still reach them.
    config = write_workspace(tmp_path, fake_llm.url, git=False, agents={"helper": "continue"})
    helper = AGENT_YAML.format(
        name="helper", url=fake_llm.url, on_disconnect="continue", max_background="30m"
    )
    # (the policy asks for every call but `bash:echo *`)
    (tmp_path / "data" / "agents" / "helper" / "agent.yaml").write_text(
        helper.replace("builtin: [bash]", f"builtin: [{tool}]")
    )
    async with asked_again_after_a_restart(
        tmp_path, config, fake_llm, (tool, arguments), crash=False
    ) as waiting:
        fake_llm.enqueue(text("done"))
        status, done = await waiting.approve()
        assert status == 200, done
        results = await waiting.tool_results()
        assert [r["payload"]["ok"] for r in results] == [True], results
        assert results[0]["content"].startswith(answer), results
