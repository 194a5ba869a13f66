"""`duragent process list|show|kill`: a person sees and stops the agents' background processes
from the terminal, as the dashboard and the admin API let them.

A real `duragent serve`, the fake model asking for a process, real `sleep` and `echo`.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import cli, start_serve, write_workspace
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin"]


def allow_background_processes(config: Path) -> None:
    definition = config.parent / "data" / "agents" / "helper" / "agent.yaml"
    text_ = definition.read_text()
    text_ = text_.replace("builtin: [bash]", "builtin: [bash, background_process]")
    definition.write_text(text_)


@pytest.mark.slow
async def test_a_person_lists_reads_and_kills_a_background_process(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config = write_workspace(tmp_path, fake_llm.url, git=False)
    allow_background_processes(config)
    missing = cli(config, "process", "list")
    assert missing.returncode == 1
    assert "no server is running" in missing.stderr

    server = start_serve(config, tmp_path / "serve.log")
    try:
        # a label the agent chose, with a terminal's retitle sequence in it: shown, never obeyed
        label = "sleeper\x1b]0;owned\x07"
        spawn = {"action": "spawn", "command": "echo warming up && sleep 3600", "label": label}
        fake_llm.enqueue(tool_calls([("background_process", spawn)]), text("It runs."))
        async with aiohttp.ClientSession(headers=server.headers) as http:
            async with http.post(f"{server.url}/api/v1/sessions", json={"agent": "helper"}) as created:
                session_id = (await created.json())["session_id"]
            path = f"{server.url}/api/v1/sessions/{session_id}"
            async with http.post(f"{path}/messages", json={"content": "start it"}) as asked:
                assert asked.status == 202, await asked.text()  # a process is asked for
                decision = {"call_id": (await asked.json())["call_id"], "decision": "allow_once"}
            async with http.post(f"{path}/approve", json=decision) as reply:
                assert reply.status == 200, await reply.text()

        listed = cli(config, "process", "list")
        assert listed.returncode == 0, listed.stderr
        [header, row] = listed.stdout.splitlines()
        assert header.split()[:3] == ["HANDLE", "AGENT", "STATUS"]
        handle, agent, status = row.split()[:3]
        assert (agent, status) == ("helper", "running")
        assert row.endswith("sleeper\\x1b]0;owned\\x07")

        def shown() -> str:
            done = cli(config, "process", "show", handle[:12])
            assert done.returncode == 0, done.stderr
            return done.stdout

        await until(lambda: "warming up" in shown(), within=20)
        page = shown()
        assert f"handle    {handle}" in page
        assert f"session   {session_id}" in page
        assert "command   echo warming up && sleep 3600" in page
        assert "status    running" in page

        killed = cli(config, "process", "kill", handle[:12])
        assert killed.returncode == 0, killed.stderr
        said = killed.stdout.strip()
        assert said.startswith(f"{handle} (sleeper\\x1b]0;owned\\x07): killed"), said
        assert said.endswith(": killed by an operator"), said

        none_running = cli(config, "process", "list")
        assert none_running.stdout.strip() == "No running processes (1 ended: --all lists them)."
        every = cli(config, "process", "list", "--all", "--json")
        [record] = json.loads(every.stdout)
        assert (record["handle"], record["status"]) == (handle, "killed")

        again = cli(config, "process", "kill", handle)
        assert again.returncode == 2
        assert f"process {handle} is not running" in again.stderr
        unknown = cli(config, "process", "show", "proc_nothing")
        assert unknown.returncode == 1
        assert "no background process 'proc_nothing'" in unknown.stderr
        typo = cli(config, "process", "list", "--agent", "helpr")
        assert typo.returncode == 2
        assert "--agent: no agent 'helpr'" in typo.stderr
    finally:
        assert server.terminate() == 0, server.log()
