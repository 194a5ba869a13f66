"""`duragent skill add|remove` while `duragent serve` runs: the next turn sees the change, and the
command's commit and the server's edit watcher do not trip over each other."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import ServeProcess, start_serve, write_workspace
from tests.unit.test_skills import write_skill

pytest_plugins = ["duragent.testing.pytest_plugin"]


def git(data: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=data, capture_output=True, text=True, check=True).stdout


def duragent(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "duragent", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def turn(server: ServeProcess, words: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(headers=server.headers) as http:
        async with http.post(f"{server.url}/api/v1/sessions", json={"agent": "helper"}) as response:
            session_id = (await response.json())["session_id"]
        async with http.post(
            f"{server.url}/api/v1/sessions/{session_id}/messages", json={"content": words}
        ) as response:
            assert response.status == 200, await response.text()
            reply: dict[str, Any] = await response.json()
            return reply


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["workspace", "agent"])
async def test_a_skill_added_and_removed_while_serving_is_seen_by_the_next_turn(
    tmp_path: Path, fake_llm: FakeLLMServer, scope: str
) -> None:
    config = write_workspace(tmp_path, fake_llm.url, agents={"helper": "continue"})
    data = tmp_path / "data"
    source = write_skill(
        tmp_path / "mine",
        "tea-timer",
        "name: tea-timer\ndescription: Time a pot of tea.\n",
        "Steep for 3 minutes.\n",
    )
    (data / "agents" / "helper" / "policy.yaml").write_text("mode: ask\nallow: [skill]\n")
    where = ["--agent", "helper"] if scope == "agent" else []
    server = start_serve(config, tmp_path / "serve.log")
    try:
        await turn(server, "first")
        added = await asyncio.to_thread(duragent, config, "skill", "add", str(source), *where)
        assert added.returncode == 0, added.stderr
        fake_llm.enqueue(tool_calls([("skill", {"name": "tea-timer"})]), text("Three minutes."))
        reply = await turn(server, "how long?")
        removed = await asyncio.to_thread(duragent, config, "skill", "remove", "tea-timer", *where)
        assert removed.returncode == 0, removed.stderr
        await turn(server, "and now?")
    finally:
        assert await asyncio.to_thread(server.terminate) == 0, server.log()

    assert reply["content"] == "Three minutes."
    system_prompts = [str(r.body["messages"][0]["content"]) for r in fake_llm.requests]
    assert ["- tea-timer: Time a pot of tea." in prompt for prompt in system_prompts] == [
        False,
        True,
        True,
        False,
    ]
    loaded = fake_llm.requests[2].body["messages"][-1]
    assert "Steep for 3 minutes." in str(loaded["content"])
    assert git(data, "status", "--porcelain", "--untracked-files=all") == "", server.log()
    subjects = git(data, "log", "--format=%s").splitlines()
    assert sum("added from" in s for s in subjects) == 1, subjects
    assert sum("tea-timer removed" in s for s in subjects) == 1, subjects
