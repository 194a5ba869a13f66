"""MCP servers as real subprocesses: tools offered to the model, calls, errors, slow calls, crashes.

The server is `duragent.testing.mcp_server`, written with the official SDK's MCPServer (FastMCP).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from duragent.mcp.hub import McpHub
from duragent.mcp.spec import McpServerSpec
from duragent.mcp.tools import McpTool
from duragent.runtime.events import ApprovalRequired, ToolCallFinished, TurnFinished
from duragent.runtime.loop import Runtime, drain
from duragent.runtime.providers import ProviderPool
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from duragent.testing.mcp_server import http_server, server_entry
from duragent.tools.registry import call_tool
from tests.integration.mcp_helpers import (
    context,
    process_ended,
    run,
    tools_by_name,
    wait_until,
    write_agent,
)

pytest_plugins = ["duragent.testing.pytest_plugin"]
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[McpHub]:
    made = McpHub(
        workspace_dir=tmp_path,
        workdir_for=lambda agent: tmp_path / "work" / agent.name,
        env={"MCP_TEST_PIDS": str(tmp_path / "pids"), "VISIBLE": "shown", "SECRET_TOKEN": "hidden"},
    )
    yield made
    await made.close()


def pids(tmp_path: Path) -> list[int]:
    path = tmp_path / "pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def test_a_crashed_server_is_restarted_and_answers_again(tmp_path: Path, hub: McpHub) -> None:
    agent = write_agent(tmp_path, [server_entry("test", env=["MCP_TEST_PIDS"])])

    crashed = await run(hub, agent, "test__crash", {}, context(tmp_path))
    again = await run(hub, agent, "test__echo", {"text": "back"}, context(tmp_path))

    assert not crashed.ok
    assert "stopped" in crashed.content
    assert again.ok
    assert again.content == "back"
    first, second = pids(tmp_path)
    assert first != second
    await process_ended(first)
    [status] = hub.statuses("helper")
    assert (status.state, status.restarts) == ("running", 1)


@pytest.mark.parametrize("handshake_only", [False, True], ids=["2026-listen", "2025-notification"])
async def test_a_tool_list_change_is_picked_up(tmp_path: Path, hub: McpHub, handshake_only: bool) -> None:
    agent = write_agent(tmp_path, [server_entry("test", handshake_only=handshake_only)])
    assert "test__late" not in await tools_by_name(hub, agent)

    grown = await run(hub, agent, "test__grow", {}, context(tmp_path))
    assert grown.content == "grown"

    async def late_tool() -> McpTool | None:
        return (await tools_by_name(hub, agent)).get("test__late")

    late = await wait_until(late_tool)
    assert (await call_tool(late, {}, context(tmp_path))).content == "late tool ran"


async def test_a_streamable_http_server_gets_the_configured_headers(tmp_path: Path, hub: McpHub) -> None:
    async with http_server(require_header="X-Token=let-me-in") as url:
        agent = write_agent(
            tmp_path,
            [
                {"name": "remote", "url": url, "headers": {"X-Token": "let-me-in"}},
                {"name": "refused", "url": url, "start_timeout": "10s"},
            ],
        )
        tools = await tools_by_name(hub, agent)
        echoed = await call_tool(tools["remote__echo"], {"text": "over http"}, context(tmp_path))

        assert echoed.content == "over http"
        assert not any(name.startswith("refused__") for name in tools)
        refused = next(status for status in hub.statuses() if status.name == "refused")
        assert refused.state == "failed"
        assert refused.error
        await hub.close()


async def test_a_missing_command_leaves_the_agent_without_those_tools(tmp_path: Path, hub: McpHub) -> None:
    agent = write_agent(
        tmp_path, [{"name": "ghost", "command": "no-such-mcp-server-here"}, server_entry("test")]
    )

    tools = await tools_by_name(hub, agent)

    assert "test__echo" in tools
    assert not any(name.startswith("ghost__") for name in tools)
    ghost = next(status for status in hub.statuses() if status.name == "ghost")
    assert ghost.state == "failed"
    assert ghost.error == "command not found: no-such-mcp-server-here"


async def test_sessions_of_an_agent_share_one_server_which_stops_with_the_hub(tmp_path: Path) -> None:
    hub = McpHub(
        workspace_dir=tmp_path,
        workdir_for=lambda agent: tmp_path / "work",
        env={"MCP_TEST_PIDS": str(tmp_path / "pids")},
    )
    agent = write_agent(tmp_path, [server_entry("test", env=["MCP_TEST_PIDS"])])
    try:
        await asyncio.gather(
            *(run(hub, agent, "test__echo", {"text": str(i)}, context(tmp_path)) for i in range(3))
        )
        [pid] = pids(tmp_path)
        assert psutil.pid_exists(pid)
    finally:
        await hub.close()
    await process_ended(pid)


async def test_an_edited_server_entry_starts_afresh_and_a_removed_one_stops(
    tmp_path: Path, hub: McpHub
) -> None:
    agent = write_agent(tmp_path, [server_entry("test", env=["MCP_TEST_PIDS"])])
    await tools_by_name(hub, agent)
    [first] = pids(tmp_path)

    edited = write_agent(tmp_path, [server_entry("test", env=["MCP_TEST_PIDS"], call_timeout="1m")])
    assert "test__echo" in await tools_by_name(hub, edited)
    _, second = pids(tmp_path)
    await process_ended(first)

    removed = write_agent(tmp_path, [])
    assert await hub.tools_for(removed) == []
    await process_ended(second)
    assert hub.statuses("helper") == []


async def test_a_session_that_started_before_an_edit_uses_the_newest_servers_not_its_own_copy(
    tmp_path: Path, hub: McpHub
) -> None:
    """A session keeps the definition it started with; taking its MCP servers from that copy,
    its turns stopped the server the newer sessions used, and they stopped its in turn."""
    older = write_agent(tmp_path, [server_entry("test", env=["MCP_TEST_PIDS"])])
    await tools_by_name(hub, older)
    edited = write_agent(tmp_path, [server_entry("test", env=["MCP_TEST_PIDS"], call_timeout="1m")])
    hub.newest = lambda name: edited

    await tools_by_name(hub, edited)  # a new session's turn: the edited entry starts afresh
    running = [pid for pid in pids(tmp_path) if psutil.pid_exists(pid)]
    for _ in range(3):  # the older session's turns, between the new one's
        assert "test__echo" in await tools_by_name(hub, older)
        assert "test__echo" in await tools_by_name(hub, edited)

    assert len(pids(tmp_path)) == 2  # one restart for the edit, none after
    assert [pid for pid in pids(tmp_path) if psutil.pid_exists(pid)] == running[-1:]


async def test_workspace_servers_reach_every_agent_unless_one_has_its_own_of_that_name(
    tmp_path: Path,
) -> None:
    shared = [
        McpServerSpec(name="test", url="http://127.0.0.1:9/mcp"),
        McpServerSpec(name="other", url="http://127.0.0.1:9/x"),
    ]
    hub = McpHub(shared, workspace_dir=tmp_path, workdir_for=lambda agent: tmp_path)
    agent = write_agent(tmp_path, [server_entry("test")])

    configured = [(scope, spec.name, spec.transport) for scope, spec in hub.configured(agent)]

    assert configured == [("agent:helper", "test", "stdio"), ("workspace", "other", "http")]


async def test_tools_whose_names_clash_once_made_safe_are_all_offered_each_calling_its_own(
    tmp_path: Path, hub: McpHub
) -> None:
    """`a.b` and `a_b` of one server, and `y` of server `x_` beside `_y` of server `x`, were one
    name each to the model: the second was hidden. Each is offered now, under a name that stays
    the same for the same tools whatever order the server lists them in."""
    agent = write_agent(
        tmp_path,
        [
            server_entry("test", extra_tools=["a.b", "a_b"]),
            server_entry("x_", extra_tools=["y"]),
            server_entry("x", extra_tools=["_y"]),
        ],
    )

    tools = await tools_by_name(hub, agent)
    ran = {name: (await call_tool(tools[name], {}, context(tmp_path))).content for name in tools}

    assert ran["test__a_b"] == "ran a_b"  # the tool whose own name it is keeps it
    assert ran["test__a_b__2"] == "ran a.b"
    assert ran["x___y"] == "ran _y"
    assert ran["x___y__2"] == "ran y"
    assert all(len(name) <= 64 for name in tools)
    listed = {status.name: status.tools for status in hub.overview([agent])}
    assert {"test__a_b", "test__a_b__2"} <= set(listed["test"])
    assert "x___y__2" in listed["x_"]

    reordered = write_agent(
        tmp_path / "again",
        [
            server_entry("x", extra_tools=["_y"]),
            server_entry("x_", extra_tools=["y"]),
            server_entry("test", extra_tools=["a_b", "a.b"]),
        ],
    )
    again = McpHub(workspace_dir=tmp_path, workdir_for=lambda agent: tmp_path / "work")
    try:
        renamed = await tools_by_name(again, reordered)
    finally:
        await again.close()
    assert {name: tool.mcp_name for name, tool in renamed.items()} == {
        name: tool.mcp_name for name, tool in tools.items()
    }


# --- a whole turn -------------------------------------------------------------------------------


@pytest.fixture
async def providers() -> AsyncIterator[ProviderPool]:
    pool = ProviderPool({"OPENAI_API_KEY": "sk-test"})
    yield pool
    await pool.close()


async def test_the_model_calls_an_mcp_tool_after_a_person_approves_it(
    tmp_path: Path, hub: McpHub, fake_llm: FakeLLMServer, providers: ProviderPool, session: SessionLog
) -> None:
    agent = write_agent(tmp_path, [server_entry("test")], fake_llm.url)
    runtime = Runtime(provider_for=providers.for_agent, mcp=hub, workdir_for=lambda a: tmp_path / "work")
    fake_llm.enqueue(tool_calls([("test__echo", {"text": "ping"})]), text("The server said ping."))

    events: list[Any] = []
    async for event in runtime.run_turn(session, agent, "ask the server"):
        events.append(event)
        if isinstance(event, ApprovalRequired):
            assert (event.tool, event.command) == ("test__echo", '{"text":"ping"}')
            runtime.approvals.decide(event.call_id, "allow_once")

    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [(e.tool, e.ok, e.content) for e in finished] == [("test__echo", True, "ping")]
    assert isinstance(events[-1], TurnFinished)
    offered = {tool["function"]["name"] for tool in fake_llm.requests[0].body["tools"]}
    assert "test__echo" in offered
    assert fake_llm.requests[1].messages[-1]["content"] == "ping"


async def test_allow_always_on_a_numbered_tool_runs_it_once_and_saves_nothing(
    tmp_path: Path, hub: McpHub, fake_llm: FakeLLMServer, providers: ProviderPool, session: SessionLog
) -> None:
    """`test__a_b__2` is `a.b` today; once the server also lists `a:b` or drops `a_b`, the number
    names another tool: an "allow always" saved under it would allow that one."""
    agent = write_agent(tmp_path, [server_entry("test", extra_tools=["a.b", "a_b"])], fake_llm.url)
    runtime = Runtime(provider_for=providers.for_agent, mcp=hub, workdir_for=lambda a: tmp_path / "work")
    fake_llm.enqueue(tool_calls([("test__a_b__2", {})]), text("done"))

    events: list[Any] = []
    async for event in runtime.run_turn(session, agent, "run it"):
        events.append(event)
        if isinstance(event, ApprovalRequired):
            runtime.approvals.decide(event.call_id, "allow_always")

    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [(e.tool, e.ok, e.content) for e in finished] == [("test__a_b__2", True, "ran a.b")]
    policy = agent.directory / "policy.yaml"
    assert not policy.exists() or "a_b__2" not in policy.read_text()


async def test_an_allow_pattern_lets_the_servers_tools_run_unasked(
    tmp_path: Path, hub: McpHub, fake_llm: FakeLLMServer, providers: ProviderPool, session: SessionLog
) -> None:
    agent = write_agent(
        tmp_path,
        [server_entry("test")],
        fake_llm.url,
        tools={"policy": {"mode": "ask", "allow": ["mcp:test:add"], "deny": ["test__fail"]}},
    )
    runtime = Runtime(provider_for=providers.for_agent, mcp=hub, workdir_for=lambda a: tmp_path / "work")
    fake_llm.enqueue(
        tool_calls([("test__add", {"a": 1, "b": 2}), ("test__fail", {"message": "x"})]), text("done")
    )

    events = await drain(runtime.run_turn(session, agent, "add"))

    assert not any(isinstance(e, ApprovalRequired) for e in events)
    finished = {e.tool: e for e in events if isinstance(e, ToolCallFinished)}
    assert finished["test__add"].ok
    assert '"sum": 3' in finished["test__add"].content
    assert not finished["test__fail"].ok
    assert finished["test__fail"].content.startswith("denied by policy")


async def test_a_tool_folder_of_an_mcp_tools_name_wins_and_the_log_says_which_tool_is_left_out(
    tmp_path: Path,
    hub: McpHub,
    fake_llm: FakeLLMServer,
    providers: ProviderPool,
    session: SessionLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = write_agent(
        tmp_path, [server_entry("test")], fake_llm.url, tools={"policy": {"allow": ["test__echo"]}}
    )
    folder = agent.directory / "tools" / "test__echo"
    folder.mkdir(parents=True)
    (folder / "run").write_text("#!/bin/sh\necho from the folder\n")
    (folder / "run").chmod(0o755)
    runtime = Runtime(provider_for=providers.for_agent, mcp=hub, workdir_for=lambda a: tmp_path / "work")
    fake_llm.enqueue(tool_calls([("test__echo", {"args": "x"})]), text("one"), text("two"))

    events = await drain(runtime.run_turn(session, agent, "echo"))
    await drain(runtime.run_turn(session, agent, "again"))

    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [(e.ok, e.content.strip()) for e in finished] == [(True, "from the folder")]
    left_out = [r.getMessage() for r in caplog.records if "MCP tool" in r.getMessage()]
    assert left_out == [
        "not offering MCP tool: 'test__echo' of MCP server 'test': the agent already has a tool of that name"
    ]


async def test_closing_does_not_wait_for_a_server_that_never_answers(tmp_path: Path) -> None:
    hub = McpHub(workspace_dir=tmp_path, workdir_for=lambda agent: tmp_path)
    agent = write_agent(
        tmp_path, [{"name": "mute", "command": "sleep", "args": ["300"], "start_timeout": "5m"}]
    )
    starting = asyncio.create_task(hub.tools_for(agent))

    async def sleeper() -> int | None:
        found = [
            p.pid for p in psutil.Process().children(recursive=True) if p.cmdline()[:2] == ["sleep", "300"]
        ]
        return found[0] if found else None

    pid = await wait_until(sleeper)
    began = time.monotonic()
    await hub.close()

    assert time.monotonic() - began < 8  # stdin closed, 2 s, SIGTERM: not the 5 minutes of start_timeout
    await process_ended(pid)
    assert await starting == []
