"""A server that cannot start says why, in one line: what it wrote to stderr, the HTTP status it
answered, what was wrong with its tool list."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.mcp.hub import McpHub
from duragent.testing.mcp_server import http_server, server_entry
from tests.integration.mcp_helpers import tools_by_name, write_agent

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[McpHub]:
    made = McpHub(workspace_dir=tmp_path, workdir_for=lambda agent: tmp_path / "work" / agent.name)
    yield made
    await made.close()


async def test_a_server_that_exits_at_start_shows_what_it_wrote_to_stderr(
    tmp_path: Path, hub: McpHub
) -> None:
    agent = write_agent(tmp_path, [server_entry("test", fail_start="fatal: TEST_API_KEY is not set")])

    assert await tools_by_name(hub, agent) == {}

    [status] = hub.statuses("helper")
    assert status.state == "failed"
    assert status.error is not None
    assert "fatal: TEST_API_KEY is not set" in status.error


async def test_a_work_folder_that_cannot_be_made_fails_the_server_not_the_caller(
    tmp_path: Path, hub: McpHub
) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "helper").write_text("a file where the agent's work folder goes")
    agent = write_agent(tmp_path, [server_entry("test")])

    # (a turn asks for these before anything else: an error here would fail every turn)
    assert await tools_by_name(hub, agent) == {}

    [status] = hub.statuses("helper")
    assert status.state == "failed"
    assert status.error is not None
    assert "File exists" in status.error


async def test_a_servers_stderr_is_logged_under_its_name(
    tmp_path: Path, hub: McpHub, caplog: pytest.LogCaptureFixture
) -> None:
    agent = write_agent(tmp_path, [server_entry("noisy", fail_start="fatal: TEST_API_KEY is not set")])
    caplog.set_level(logging.INFO, logger="duragent.mcp")

    await tools_by_name(hub, agent)

    assert any(
        "noisy" in record.getMessage() and "fatal: TEST_API_KEY is not set" in record.getMessage()
        for record in caplog.records
        if record.name.startswith("duragent.mcp")
    ), [record.getMessage() for record in caplog.records]


async def test_an_http_server_refusing_the_request_shows_its_http_status(tmp_path: Path, hub: McpHub) -> None:
    async with http_server(require_header="X-Token=let-me-in") as url:
        agent = write_agent(
            tmp_path,
            [{"name": "remote", "url": url, "headers": {"X-Token": "wrong"}, "start_timeout": "10s"}],
        )

        assert await tools_by_name(hub, agent) == {}

        [status] = hub.statuses("helper")
        assert status.state == "failed"
        assert status.error is not None
        assert "HTTP 401" in status.error
        await hub.close()


async def test_a_tool_list_the_client_refuses_is_said_in_one_line(tmp_path: Path, hub: McpHub) -> None:
    tools = [
        {"name": "fine", "inputSchema": {"type": "object"}},
        {"name": "broken", "inputSchema": {"type": "string"}},
    ]
    agent = write_agent(tmp_path, [server_entry("raw", raw_tool_list=tools)])

    assert await tools_by_name(hub, agent) == {}

    [status] = hub.statuses("helper")
    assert status.state == "failed"
    assert status.error is not None
    assert "\n" not in status.error
    assert "tools[1].inputSchema.type" in status.error
    assert "'object'" in status.error
