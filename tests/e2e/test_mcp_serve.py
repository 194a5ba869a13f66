"""A third-party MCP server from PyPI (`mcp-server-time`) through a whole turn of `duragent serve`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiohttp
import psutil
import pytest
import yaml

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import cli, start_serve, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin"]

TIME_SERVER = str(Path(sys.executable).with_name("mcp-server-time"))


def add_agent(config: Path, llm_url: str) -> None:
    folder = config.parent / "data" / "agents" / "timekeeper"
    folder.mkdir(parents=True)
    agent = {
        "apiVersion": "duragent/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "timekeeper"},
        "spec": {
            "model": {
                "provider": "openai",
                "name": "gpt-test",
                "base_url": llm_url,
                "api_key_env": "FAKE_LLM_KEY",
            },
            "mcp_servers": [{"name": "time", "command": TIME_SERVER, "args": ["--local-timezone", "UTC"]}],
            "tools": {"policy": {"mode": "ask", "allow": ["mcp:time:get_current_time"]}},
        },
    }
    (folder / "agent.yaml").write_text(yaml.safe_dump(agent))


def time_servers(pid: int) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(pid).children(recursive=True)
        if any("mcp-server-time" in part for part in child.cmdline())
    ]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_model_asks_mcp_server_time_for_the_time_through_a_served_turn(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    add_agent(config, fake_llm.url)
    fake_llm.enqueue(
        tool_calls([("time__get_current_time", {"timezone": "Asia/Tokyo"})]),
        text("It is evening in Tokyo."),
    )
    server = start_serve(config, tmp_path / "serve.log")
    try:
        assert time_servers(server.process.pid) == []  # started on first use, not with the server
        before = await asyncio.to_thread(cli, config, "mcp", "list", "--agent", "timekeeper", "--json")
        assert before.returncode == 0, before.stderr
        assert [(s["name"], s["state"], s["tools"]) for s in json.loads(before.stdout)] == [
            ("time", "stopped", [])
        ]
        async with aiohttp.ClientSession(headers=server.headers) as http:
            async with http.post(f"{server.url}/api/v1/sessions", json={"agent": "timekeeper"}) as response:
                session_id = (await response.json())["session_id"]
            async with http.post(
                f"{server.url}/api/v1/sessions/{session_id}/messages", json={"content": "time in Tokyo?"}
            ) as response:
                assert response.status == 200, await response.text()
        [started] = time_servers(server.process.pid)
        after = await asyncio.to_thread(cli, config, "mcp", "list", "--agent", "timekeeper")
        assert after.returncode == 0, after.stderr
        assert (
            f"time (agent:timekeeper, stdio: {TIME_SERVER} --local-timezone UTC): running, 2 tools"
            in after.stdout
        )
        assert "  time__convert_time" in after.stdout
    finally:
        assert await asyncio.to_thread(server.terminate) == 0, server.log()

    offered = {tool["function"]["name"]: tool["function"] for tool in fake_llm.requests[0].body["tools"]}
    assert offered["time__get_current_time"]["parameters"]["required"] == ["timezone"]
    assert "time__convert_time" in offered
    answer = fake_llm.requests[1].messages[-1]
    assert answer["role"] == "tool"
    reported = json.loads(answer["content"])
    assert reported["timezone"] == "Asia/Tokyo"
    assert reported["datetime"].endswith("+09:00")
    events = [
        json.loads(line) for line in (tmp_path / "data" / "sessions" / session_id / "events.jsonl").open()
    ]
    [result] = [event for event in events if event["type"] == "tool_result"]
    assert (result["payload"]["tool"], result["payload"]["ok"]) == ("time__get_current_time", True)
    assert not started.is_running() or started.status() == psutil.STATUS_ZOMBIE
