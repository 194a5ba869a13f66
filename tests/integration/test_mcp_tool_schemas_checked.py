"""A tool whose input schema is huge is left out, with a warning that names it: offered, it
would be sent with every request of every turn of the agent."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.mcp.hub import McpHub
from duragent.testing.mcp_server import server_entry
from tests.integration.mcp_helpers import tools_by_name, write_agent

pytestmark = pytest.mark.timeout(120)

HUGE = {"type": "object", "properties": {"x": {"type": "string", "description": "y" * 80_000}}}


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[McpHub]:
    made = McpHub(workspace_dir=tmp_path, workdir_for=lambda agent: tmp_path / "work" / agent.name)
    yield made
    await made.close()


async def test_a_tool_with_a_huge_schema_is_left_out_with_a_warning(
    tmp_path: Path, hub: McpHub, caplog: pytest.LogCaptureFixture
) -> None:
    schemas = {"huge": HUGE, "plain": {"type": "object"}}
    agent = write_agent(tmp_path, [server_entry("test", schema_tools=schemas)])

    tools = await tools_by_name(hub, agent)

    assert {"test__echo", "test__plain"} <= set(tools)
    assert "test__huge" not in tools
    [status] = hub.statuses("helper")
    assert "test__huge" not in status.tools
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'huge'" in line and "KiB" in line for line in warnings), warnings
