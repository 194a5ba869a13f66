"""Real `duragent serve` processes: signals, crash recovery, the run file, serve status/stop."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import cli, read_sse, start_serve, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin"]


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as response:
        return response.status, await response.json(
            content_type=None
        ) if response.content_length != 0 else None


def git(data: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=data, capture_output=True, text=True, check=True).stdout


def written(path: Path, within: float = 60.0) -> str:
    """The file's text once it exists: the server writes serve.json just after it starts
    answering, so the first answer can come before it (seconds before, on a machine busy with
    other test runs)."""
    deadline = time.monotonic() + within
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.read_text() if path.exists() else ""


@pytest.mark.slow
async def test_sigterm_exits_zero_with_everything_committed(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    config = write_workspace(tmp_path, fake_llm.url)
    server = start_serve(config, tmp_path / "serve.log")
    run_file = tmp_path / "data" / "run" / "serve.json"
    recorded = written(run_file)
    assert recorded, f"no {run_file} after 60 s; the server's log:\n{server.log()}"
    assert json.loads(recorded)["pid"] == server.process.pid
    fake_llm.enqueue(text("remembered reply"))
    async with aiohttp.ClientSession(headers=server.headers) as http:
        status, created = await call(http, "POST", f"{server.url}/api/v1/sessions", {"agent": "helper"})
        session_id = created["session_id"]
        status, _reply = await call(
            http, "POST", f"{server.url}/api/v1/sessions/{session_id}/messages", {"content": "hi"}
        )
        assert status == 200
    assert await asyncio.to_thread(server.terminate) == 0, server.log()
    assert not run_file.exists()
    data = tmp_path / "data"
    assert git(data, "status", "--porcelain", "--untracked-files=all") == "", server.log()
    log = (data / "sessions" / session_id / "events.jsonl").read_text()
    assert "remembered reply" in log
    assert git(data, "log", "--format=%s")


@pytest.mark.slow
async def test_sigkill_mid_turn_loses_nothing_acknowledged_and_the_session_resumes(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    server = start_serve(config, tmp_path / "serve.log")
    fake_llm.enqueue(
        tool_calls([("bash", {"command": "echo before-crash"})]),
        text("slow " * 100, chunks=100, chunk_delay=0.05),
    )
    async with aiohttp.ClientSession(headers=server.headers) as http:
        _, created = await call(http, "POST", f"{server.url}/api/v1/sessions", {"agent": "helper"})
        session_id = created["session_id"]
        seen = []
        async with http.post(
            f"{server.url}/api/v1/sessions/{session_id}/stream", json={"content": "go"}
        ) as r:
            async for event in read_sse(r):
                seen.append(event.event)
                if event.event == "token":
                    server.kill()
                    break
        assert seen[0] == "start"
        assert "tool_result" in seen
        fake_llm.enqueue(text("recovered answer"))
        server = start_serve(config, tmp_path / "serve2.log")
        try:
            for _ in range(100):
                _, body = await call(http, "GET", f"{server.url}/api/v1/sessions/{session_id}/messages")
                if body["messages"][-1]["content"] == "recovered answer":
                    break
                await asyncio.sleep(0.1)
            contents = [m.get("content") for m in body["messages"]]
            assert contents[0] == "go"
            assert "before-crash" in contents[3]
            assert contents[-1] == "recovered answer"
            fake_llm.enqueue(text("still usable"))
            status, reply = await call(
                http, "POST", f"{server.url}/api/v1/sessions/{session_id}/messages", {"content": "again"}
            )
            assert status == 200
            assert reply["content"] == "still usable"
        finally:
            assert await asyncio.to_thread(server.terminate) == 0


@pytest.mark.slow
def test_serve_status_and_stop_use_the_run_file(tmp_path: Path) -> None:
    # the server reads the admin token from its environment; the CLI gets it from DURAGENT_ADMIN_TOKEN
    config = write_workspace(tmp_path, "http://127.0.0.1:9", git=False, admin_token="${ADMIN_TOKEN:-}")
    assert cli(config, "serve", "status").returncode == 1
    server = start_serve(config, tmp_path / "serve.log", env={"ADMIN_TOKEN": "adm-secret"})
    status = cli(config, "serve", "status", "--json")
    assert status.returncode == 0, status.stderr
    record = json.loads(status.stdout)
    assert record["running"]
    assert record["pid"] == server.process.pid
    assert record["url"] == server.url
    refused = cli(config, "serve", "stop")
    assert refused.returncode != 0
    assert "403" in refused.stderr
    stopped = cli(config, "serve", "stop", env={"DURAGENT_ADMIN_TOKEN": "adm-secret"})
    assert stopped.returncode == 0, stopped.stderr
    assert server.process.wait(timeout=10) == 0


@pytest.mark.slow
def test_gateway_list_asks_the_running_server_with_the_admin_token(tmp_path: Path) -> None:
    config = write_workspace(tmp_path, "http://127.0.0.1:9", git=False, admin_token="${ADMIN_TOKEN:-}")
    missing = cli(config, "gateway", "list")
    assert missing.returncode == 1
    assert "no server is running" in missing.stderr
    server = start_serve(config, tmp_path / "serve.log", env={"ADMIN_TOKEN": "adm-secret"})
    try:
        refused = cli(config, "gateway", "list")
        assert refused.returncode == 1
        assert "the server answered HTTP 403" in refused.stderr
        listed = cli(config, "gateway", "list", "--json", env={"DURAGENT_ADMIN_TOKEN": "adm-secret"})
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == []
    finally:
        assert server.terminate() == 0


@pytest.mark.slow
def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    config = write_workspace(tmp_path, "http://127.0.0.1:9", git=False)
    server = start_serve(config, tmp_path / "serve.log")
    try:
        second = cli(config, "serve", "--port", "0")
        assert second.returncode != 0
        assert f"pid {server.process.pid}" in second.stderr
    finally:
        assert server.terminate() == 0
