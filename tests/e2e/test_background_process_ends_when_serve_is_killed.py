"""A plain background process does not outlive a `duragent serve` killed with SIGKILL (Linux):
nobody is left to read its output, time it or report its end, so it ends with the server rather
than running on until the next start finds it. (Interactive ones run in tmux and are adopted
again: they are meant to outlive it.)"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
import yaml

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import start_serve, write_workspace
from tests.integration.mcp_helpers import ended
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin"]


def records(data: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted((data / "processes").glob("proc_*.yaml"))]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(sys.platform != "linux", reason="only Linux kills a child when its parent dies")
async def test_a_background_process_ends_when_serve_is_killed(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    definition = tmp_path / "data" / "agents" / "helper" / "agent.yaml"
    agent = yaml.safe_load(definition.read_text())
    agent["spec"]["tools"]["builtin"].append("background_process")
    agent["spec"]["tools"]["policy"]["mode"] = "allow"
    definition.write_text(yaml.safe_dump(agent))
    # a quiet process: one that writes would die of its closed output pipe anyway
    spawn = {"action": "spawn", "command": "sleep 600"}
    fake_llm.enqueue(tool_calls([("background_process", spawn)]), text("Started."))
    server = start_serve(config, tmp_path / "serve.log")
    pid: int | None = None
    try:
        async with aiohttp.ClientSession(headers=server.headers) as http:
            async with http.post(f"{server.url}/api/v1/sessions", json={"agent": "helper"}) as response:
                session_id = (await response.json())["session_id"]
            path = f"{server.url}/api/v1/sessions/{session_id}/messages"
            async with http.post(path, json={"content": "start it"}) as response:
                assert response.status == 200, await response.text()
        [record] = records(tmp_path / "data")
        pid = int(record["pid"])
        await until(lambda: psutil.Process(pid).cmdline() == ["sleep", "600"], within=15)
        await asyncio.to_thread(server.kill)  # no shutdown: nothing of serve's own stops it
        await until(lambda: ended(pid), within=15)
    finally:
        if server.process.poll() is None:
            server.kill()
        if pid is not None and not ended(pid):
            psutil.Process(pid).kill()
