"""A process's end that a `spawn` with `wait` saw is reported at least once and not twice: the
call's result answers the session, and the process is marked reported only once that result is
stored. A kill -9 in between leaves it to be reported (as a `[process finished]` message) at the
next start, not lost.

The servers are a real `duragent serve` (killed with SIGKILL) and the real app in-process, the
model the fake LLM server, the processes real `bash`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from duragent.access_tokens import auth_headers
from duragent.config import load_config
from duragent.server.app import create_app
from duragent.server.state import STATE
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import CHILD_ENV, Api, start_serve, start_test_server, write_workspace
from tests.waiting import eventually, until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

MARKER = "[process finished]"


def with_processes(root: Path) -> None:
    definition = root / "data" / "agents" / "helper" / "agent.yaml"
    definition.write_text(
        definition.read_text().replace("builtin: [bash]", "builtin: [bash, background_process]")
    )


def records(data: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted((data / "processes").glob("proc_*.yaml"))]


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as response:
        return response.status, await response.json(content_type=None)


@pytest.mark.slow
async def test_an_end_seen_by_wait_is_reported_after_a_kill_before_the_result_was_stored(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    with_processes(tmp_path)
    data = tmp_path / "data"
    # one batch: the spawn's wait sees its process end at once; the batch's results are stored
    # only once the other call (a person approves it) ends too, which takes a while
    spawn = {"action": "spawn", "command": "echo quick job", "wait": "30s"}
    fake_llm.enqueue(tool_calls([("background_process", spawn), ("bash", {"command": "sleep 20"})]))
    server = start_serve(config, tmp_path / "serve.log")
    async with aiohttp.ClientSession(headers=server.headers) as http:
        _, created = await call(http, "POST", f"{server.url}/api/v1/sessions", {"agent": "helper"})
        session_id = created["session_id"]
        base = f"{server.url}/api/v1/sessions/{session_id}"
        status, pending = await call(http, "POST", f"{base}/messages", {"content": "run both"})
        assert status == 202, pending
        decision = {"call_id": pending["call_id"], "decision": "allow_once"}
        approving = asyncio.ensure_future(call(http, "POST", f"{base}/approve", decision))
        try:
            await until(lambda: [r["status"] for r in records(data)] == ["exited"], within=20)
        finally:
            server.kill()
            with_error = await asyncio.gather(approving, return_exceptions=True)
        assert isinstance(with_error[0], aiohttp.ClientError), with_error
        [record] = records(data)
        assert record["reported"] is False  # the wait's result never reached the session
        events = (data / "sessions" / session_id / "events.jsonl").read_text()
        assert '"tool":"background_process"' in events  # its call is there, without its result
        assert record["handle"] not in events
        assert MARKER not in events

        server = start_serve(config, tmp_path / "serve2.log")
        base = f"{server.url}/api/v1/sessions/{session_id}"
        try:

            async def told() -> list[str] | None:
                _, page = await call(http, "GET", f"{base}/messages?limit=200")
                said = [m["content"] for m in page["messages"] if m["type"] == "user_message"]
                ends = [c for c in said if c.startswith(MARKER)]
                return ends or None

            [end] = await eventually(told, within=30)
            assert end.startswith(f"{MARKER} {record['handle']}")
            assert "outcome: exited with code 0" in end
            await until(lambda: records(data)[0]["reported"] is True, within=20)
            # reported once: the session's log holds one such message
            lines = (data / "sessions" / session_id / "events.jsonl").read_text().splitlines()
            starts = [json.loads(line) for line in lines]
            told = [e for e in starts if e["type"] == "user_message" and MARKER in e["payload"]["content"]]
            assert len(told) == 1, told
        finally:
            assert await asyncio.to_thread(server.terminate) == 0


async def test_an_end_answered_by_wait_is_marked_reported_and_not_sent_as_a_message(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config_path = write_workspace(tmp_path, fake_llm.url, git=False)
    with_processes(tmp_path)
    data = tmp_path / "data"
    config = load_config(config_path)
    app = create_app(config, env=CHILD_ENV, shutdown_grace=2, idle_ttl=timedelta(minutes=5))
    server = await start_test_server(TestServer(app, host="127.0.0.1"))
    try:
        async with aiohttp.ClientSession(headers=auth_headers(config)) as http:
            api = Api(server, http)
            spawn = {"action": "spawn", "command": "echo quick job", "wait": "30s"}
            fake_llm.enqueue(tool_calls([("background_process", spawn)]), text("It ran."))
            session_id = await api.new_session()
            path = f"/api/v1/sessions/{session_id}"
            status, reply = await api.call("POST", f"{path}/messages", {"content": "go"})
            assert (status, reply.get("content")) == (200, "It ran."), reply
            [record] = records(data)
            # marked reported once the wait's result was stored (before the model was asked again)
            assert (record["status"], record["reported"]) == ("exited", True)
            _, page = await api.call("GET", f"{path}/messages")
            results = [m["content"] for m in page["messages"] if m["type"] == "tool_result"]
            assert results == [f"process {record['handle']} exited with code 0\nquick job"]
            said = [m["content"] for m in page["messages"] if m["type"] == "user_message"]
            assert said == ["go"]  # no `[process finished]` message follows
            live = app[STATE].sessions.live[session_id]
            assert (live.busy, live.queued) == (False, 0)
    finally:
        await server.close()
    # nor after a restart: the end is reported already
    app = create_app(config, env=CHILD_ENV, shutdown_grace=2, idle_ttl=timedelta(minutes=5))
    server = await start_test_server(TestServer(app, host="127.0.0.1"))
    try:
        await app[STATE].processes.prune()  # (what a start does once its reports are sent)
        assert app[STATE].processes.list("helper")[0].reported
        events = (data / "sessions" / session_id / "events.jsonl").read_text()
        assert MARKER not in events
    finally:
        await server.close()
