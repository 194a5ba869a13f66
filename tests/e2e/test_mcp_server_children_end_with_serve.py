"""What an MCP server started ends with it: a stdio server's own children (a helper it ran, a
command of a tool) do not outlive `duragent serve`, even when the server exits cleanly itself,
nor a server that crashed and is restarted (each restart would leave more of them); and the
server itself does not outlive a `duragent serve` killed with SIGKILL (on Linux)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import psutil
import pytest
import yaml

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import ServeProcess, start_serve, write_workspace
from tests.integration.mcp_helpers import ended
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin"]

#: A server with a tool that starts a long-running child and answers with its pid, as servers
#: that run a helper (a language server, a browser) do; it leaves the child running when its
#: stdin ends and it exits.
SPAWNING_SERVER = """\
import os
import subprocess
import threading
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("spawner", version="1.0")


@server.tool(description="Start a helper process and answer with its pid.")
def start_helper() -> str:
    return str(subprocess.Popen(["sleep", "600"]).pid)


@server.tool(description="Keep this process running after its stdin ends; answer with its pid.")
def linger() -> str:
    threading.Thread(target=time.sleep, args=(600,)).start()  # not a daemon: exit waits for it
    return str(os.getpid())


@server.tool(description="Exit the server process at once.")
def crash() -> str:
    os._exit(3)


server.run()
"""


def add_spawning_server(config: Path) -> None:
    script = config.parent / "spawning_server.py"
    script.write_text(SPAWNING_SERVER)
    agent_yaml = config.parent / "data" / "agents" / "helper" / "agent.yaml"
    agent = yaml.safe_load(agent_yaml.read_text())
    agent["spec"]["mcp_servers"] = [{"name": "spawner", "command": sys.executable, "args": [str(script)]}]
    agent["spec"]["tools"]["policy"]["allow"].append("mcp:spawner:*")
    agent_yaml.write_text(yaml.safe_dump(agent))


async def one_turn(server: ServeProcess, content: str) -> None:
    """A new session of agent `helper` takes `content`, and its turn ends with a reply."""
    async with aiohttp.ClientSession(headers=server.headers) as http:
        async with http.post(f"{server.url}/api/v1/sessions", json={"agent": "helper"}) as response:
            session_id = (await response.json())["session_id"]
        path = f"{server.url}/api/v1/sessions/{session_id}/messages"
        async with http.post(path, json={"content": content}) as response:
            assert response.status == 200, await response.text()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_child_of_an_mcp_server_ends_when_serve_stops(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    add_spawning_server(config)
    fake_llm.enqueue(tool_calls([("spawner__start_helper", {})]), text("Started."))
    server = start_serve(config, tmp_path / "serve.log")
    helper: psutil.Process | None = None
    try:
        await one_turn(server, "start it")
        answer = fake_llm.requests[1].messages[-1]
        assert answer["role"] == "tool", answer
        helper = psutil.Process(int(answer["content"]))
        assert helper.cmdline() == ["sleep", "600"]
        assert await asyncio.to_thread(server.terminate) == 0, server.log()
        await until(lambda: ended(helper.pid), within=15)
    finally:
        if server.process.poll() is None:
            server.kill()
        if helper is not None and not ended(helper.pid):
            helper.kill()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_child_of_an_mcp_server_that_crashed_ends_before_it_is_restarted(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    add_spawning_server(config)
    fake_llm.enqueue(
        tool_calls([("spawner__start_helper", {})]), tool_calls([("spawner__crash", {})]), text("Crashed.")
    )
    server = start_serve(config, tmp_path / "serve.log")
    helper: psutil.Process | None = None
    try:
        await one_turn(server, "start, then crash")
        answer = fake_llm.requests[1].messages[-1]
        assert answer["role"] == "tool", answer
        helper = psutil.Process(int(answer["content"]))
        assert "stopped during the call" in fake_llm.requests[2].messages[-1]["content"]
        await until(lambda: ended(helper.pid), within=15)
        assert server.process.poll() is None
    finally:
        assert await asyncio.to_thread(server.terminate) == 0, server.log()
        if helper is not None and not ended(helper.pid):
            helper.kill()


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(sys.platform != "linux", reason="only Linux kills a child when its parent dies")
async def test_an_mcp_server_ends_when_serve_is_killed(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    add_spawning_server(config)
    fake_llm.enqueue(tool_calls([("spawner__linger", {})]), text("Lingering."))
    server = start_serve(config, tmp_path / "serve.log")
    mcp_server: psutil.Process | None = None
    try:
        await one_turn(server, "linger")
        answer = fake_llm.requests[1].messages[-1]
        assert answer["role"] == "tool", answer
        mcp_server = psutil.Process(int(answer["content"]))
        assert mcp_server.ppid() == server.process.pid
        await asyncio.to_thread(server.kill)  # no shutdown: nothing of serve's own stops it
        await until(lambda: ended(mcp_server.pid), within=15)
    finally:
        if server.process.poll() is None:
            server.kill()
        if mcp_server is not None and not ended(mcp_server.pid):
            mcp_server.kill()
