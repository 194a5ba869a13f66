"""A real `duragent serve`: the fake model loads a skill and calls a tool folder's program in one turn."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import start_serve, write_workspace
from tests.unit.test_skills import write_skill
from tests.unit.test_tool_folders import tool_folder

pytest_plugins = ["duragent.testing.pytest_plugin"]


def git(data: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=data, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
async def test_a_served_turn_loads_a_skill_and_runs_a_tool_folder_and_both_are_committed(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config = write_workspace(tmp_path, fake_llm.url, agents={"helper": "continue"})
    data = tmp_path / "data"
    # added by hand after the workspace was committed: the server commits them as a person's edits
    write_skill(
        data / "skills",
        "release-stamp",
        "name: release-stamp\ndescription: Stamp a release with the stamp tool.\n",
        "# Stamping\n\nCall the `stamp` tool with the version.\n",
    )
    tool_folder(
        data / "agents" / "helper" / "tools",
        "stamp",
        '#!/bin/sh\necho "stamped: $*"\n',
        readme="Stamp a release. Arguments: the version.",
    )
    (data / "agents" / "helper" / "policy.yaml").write_text("mode: ask\nallow: [skill, stamp]\n")
    fake_llm.enqueue(
        tool_calls([("skill", {"name": "release-stamp"})]),
        tool_calls([("stamp", {"args": "release 1.2"})]),
        text("Stamped release 1.2."),
    )
    server = start_serve(config, tmp_path / "serve.log")
    try:
        async with aiohttp.ClientSession(headers=server.headers) as http:
            async with http.post(f"{server.url}/api/v1/sessions", json={"agent": "helper"}) as response:
                session_id = (await response.json())["session_id"]
            async with http.post(
                f"{server.url}/api/v1/sessions/{session_id}/messages", json={"content": "stamp 1.2"}
            ) as response:
                assert response.status == 200, await response.text()
                reply = await response.json()
            async with http.get(f"{server.url}/api/v1/sessions/{session_id}/messages") as response:
                history = (await response.json())["messages"]
    finally:
        assert await asyncio.to_thread(server.terminate) == 0, server.log()

    assert reply["content"] == "Stamped release 1.2.", reply
    loaded, stamped = [m for m in history if m["type"] == "tool_result"]
    assert loaded["payload"]["ok"], loaded
    assert "Call the `stamp` tool with the version." in loaded["content"]
    assert stamped["payload"]["ok"], stamped
    assert stamped["content"] == "stamped: release 1.2"
    system = fake_llm.requests[0].body["messages"][0]["content"]
    assert "- release-stamp: Stamp a release with the stamp tool." in system
    offered = {
        t["function"]["name"]: t["function"]["description"] for t in fake_llm.requests[0].body["tools"]
    }
    assert offered["stamp"] == "Stamp a release. Arguments: the version."
    assert git(data, "status", "--porcelain", "--untracked-files=all", "--", "skills", "agents") == "", (
        server.log()
    )
    committed = git(data, "log", "--format=%s", "--name-only")
    assert "skills/release-stamp/SKILL.md" in committed
    assert "agents/helper/tools/stamp/run" in committed
