"""`duragent agent context` counts the tool definitions a turn offers, as the turn does: for an
agent whose tools take much of a small window it keeps the memory and the history the next
request really sends, and its figures add up (docs/agents.md)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from duragent.runtime.events import TurnFinished
from duragent.sessions.log import SessionLog
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer, text
from tests.integration.turn_setup import agent_in, runtime_on, turn_answering

pytest_plugins = ["duragent.testing.pytest_plugin"]

DURAGENT = Path(sys.executable).parent / "duragent"


def agent_yaml(url: str) -> str:
    cli = "\n".join(
        f"  - {{name: tool_{i}, command: 'true', description: '{f'what tool {i} does, at length. ' * 30}'}}"
        for i in range(6)
    )
    return f"""\
name: helper
model: {{provider: openai, name: gpt-test, base_url: "{url}", max_output_tokens: 200}}
context: {{max_tokens: 4000}}
memory: {{enabled: true}}
tools:
  builtin: [read_file]
  cli:
{cli}
"""


def agent_context(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(DURAGENT), "agent", "context", "helper", *args],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


async def test_agent_context_keeps_what_the_next_turn_sends_beside_large_tools(tmp_path: Path) -> None:
    (tmp_path / "duragent.yaml").write_text("data_dir: .duragent\n")
    data = tmp_path / ".duragent"
    store = FilesystemSessionStore(data / "sessions", fsync="never")
    session = await SessionLog.create(store, agent="helper")
    async with FakeLLMServer() as server:
        agent = agent_in(data, agent_yaml(server.url))
        # (over memory's share of what the tools leave, within its share of the whole budget)
        (data / "memory" / "helper").mkdir(parents=True)
        (data / "memory" / "helper" / "MEMORY.md").write_text("- a fact worth keeping\n" * 100)
        async with runtime_on(data) as runtime:
            for turn in range(4):
                server.enqueue(text(f"answer {turn}"))
                events = await turn_answering(runtime, session, agent, f"turn {turn}: " + "u" * 1200)
                assert isinstance(events[-1], TurnFinished), events[-1]
            # a message the model has not answered yet: the next request is the session as it is
            await session.append("user_message", {"content": "turn 4: " + "u" * 1200, "turn": 5})
            shown = await asyncio.to_thread(agent_context, tmp_path, "--session", session.session_id)
            as_json = await asyncio.to_thread(
                agent_context, tmp_path, "--session", session.session_id, "--json"
            )
            server.enqueue(text("answer 4"))
            async for _event in runtime.run_turn(session, agent, None):
                pass
    await store.close()

    sent: dict[str, Any] = server.requests[-1].body
    preview = json.loads(as_json.stdout)
    assert [m["content"] for m in preview["messages"]] == [m["content"] for m in sent["messages"]]
    assert "[…" in preview["messages"][0]["content"], "memory cut to its share of what the tools leave"
    assert preview["history_dropped"] > 0, "older turns make room for the tools"
    tools = preview["tools"]
    assert tools["count"] == len(sent["tools"]) == 8  # read_file, memory and the six cli tools
    assert tools["tokens"] > 1500
    system = sum(part["tokens"] for part in preview["parts"]) + 4  # (the parts' separators included)
    history = preview["tokens"] - tools["tokens"]
    assert system < history < preview["budget"]
    assert preview["tokens"] <= preview["budget"]
    assert f"tools: {tools['count']} definitions, ~{tools['tokens']} tokens" in shown.stderr
    assert "MCP" not in shown.stderr, "the agent has no MCP server whose tools go uncounted"


def test_agent_context_names_the_mcp_servers_whose_tools_it_does_not_count(tmp_path: Path) -> None:
    (tmp_path / "duragent.yaml").write_text(
        "data_dir: .duragent\nmcp_servers:\n  - {name: shared, url: 'http://127.0.0.1:9/mcp'}\n"
    )
    started = tmp_path / "started"
    agent_in(
        tmp_path / ".duragent",
        "name: helper\nmodel: {provider: openai, name: gpt-test}\ntools: [read_file]\n"
        f"mcp_servers:\n  - {{name: own, command: touch, args: ['{started}']}}\n",
    )

    shown = agent_context(tmp_path)
    tools = json.loads(agent_context(tmp_path, "--json").stdout)["tools"]

    assert tools["count"] == 1
    assert tools["mcp_servers_not_counted"] == ["own", "shared"]
    assert "not counted: the tools of MCP servers own, shared" in shown.stderr
    assert not started.exists(), "no MCP server is started for a look"
