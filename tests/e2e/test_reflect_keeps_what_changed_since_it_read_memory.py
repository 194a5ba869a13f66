"""`reflect` rewrites MEMORY.md from what it was shown; what a person or another session's
`reflect` added to the file meanwhile is kept, and the person's lines are committed as theirs
(a real `duragent serve`, the fake OpenAI model calling the memory tool, real git)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import ServeProcess, start_serve, write_workspace
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REFLECT_READ = tool_calls([("memory", {"action": "reflect"})])
RECALL = tool_calls([("memory", {"action": "recall"})])


def reflect_write(content: str) -> Any:
    return tool_calls([("memory", {"action": "reflect", "content": content})])


async def turn(http: aiohttp.ClientSession, server: ServeProcess, session_id: str, content: str) -> None:
    url = f"{server.url}/api/v1/sessions/{session_id}/messages"
    async with http.post(url, json={"content": content}) as response:
        assert response.status == 200, await response.text()


async def new_session(http: aiohttp.ClientSession, server: ServeProcess) -> str:
    async with http.post(f"{server.url}/api/v1/sessions", json={"agent": "helper"}) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["session_id"])


def save_as_vim_does(path: Path, text: str) -> None:
    """Write a temp file beside `path` and rename it over the original."""
    temp = path.with_name(f".{path.name}.swx")
    temp.write_text(text)
    os.replace(temp, path)


def git(data: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(data), *args], capture_output=True, text=True, check=True).stdout


async def test_a_persons_line_and_another_sessions_reflect_survive_a_reflect_rewrite(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config = write_workspace(tmp_path, fake_llm.url)
    data = tmp_path / "data"
    agent_yaml = data / "agents" / "helper" / "agent.yaml"
    definition = agent_yaml.read_text().replace("builtin: [bash]", "builtin: [bash, memory]")
    agent_yaml.write_text(definition.replace('allow: ["bash:echo *"]', 'allow: ["bash:echo *", "memory:*"]'))
    long_term = data / "memory" / "helper" / "MEMORY.md"
    long_term.parent.mkdir(parents=True)
    long_term.write_text("# Memory\n\n- Uses vim\n- Old plan\n")
    server = await asyncio.to_thread(start_serve, config, tmp_path / "serve.log")
    try:
        async with aiohttp.ClientSession(headers=server.headers) as http:
            first, second = await new_session(http, server), await new_session(http, server)
            fake_llm.enqueue(REFLECT_READ, text("shown"))
            await turn(http, server, first, "reflect")
            fake_llm.enqueue(REFLECT_READ, text("shown"))
            await turn(http, server, second, "reflect")

            save_as_vim_does(long_term, long_term.read_text() + "- Ada's cat is called Tom\n")
            await until(lambda: "Ada's cat" in git(data, "log", "-p", "--", "memory/helper/MEMORY.md"), 30)
            fake_llm.enqueue(RECALL, text("recalled"))
            await turn(http, server, second, "what do you know?")

            fake_llm.enqueue(reflect_write("# Memory\n\n- Uses vim\n- Ships on Fridays\n"), text("saved"))
            await turn(http, server, first, "save it")
            fake_llm.enqueue(
                reflect_write("# Memory\n\n- Uses vim\n- Old plan\n- Likes tea\n"), text("saved")
            )
            await turn(http, server, second, "save it")

        kept = long_term.read_text()
        for line in ("- Ada's cat is called Tom", "- Ships on Fridays", "- Likes tea"):
            assert line in kept, kept
        person = git(data, "log", "--format=%an|%s", "-S", "Ada's cat", "--", "memory/helper/MEMORY.md")
        assert person.splitlines()[-1].split("|")[1].startswith("edit:"), person
    finally:
        assert await asyncio.to_thread(server.terminate) == 0, server.log()
