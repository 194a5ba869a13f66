"""The values of the variables an MCP server gets (`env`) are usually its credentials: what the
server writes to stderr is logged and quoted in its error (which a tool result, so the session's
log, can carry) with those values redacted, whatever the variables are called."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.mcp.hub import McpHub
from tests.integration.mcp_helpers import tools_by_name, write_agent

pytestmark = pytest.mark.timeout(120)

PAT = "pat-7c1e9a3b5d2f4e60"


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[McpHub]:
    env = {"PATH": os.environ["PATH"], "ATLAS_PAT": PAT}
    made = McpHub(workspace_dir=tmp_path, workdir_for=lambda agent: tmp_path / "work", env=env)
    yield made
    await made.close()


async def test_a_passed_variable_a_failing_server_prints_is_redacted_in_its_log_and_error(
    tmp_path: Path, hub: McpHub, caplog: pytest.LogCaptureFixture
) -> None:
    entry = {
        "name": "atlas",
        "command": "sh",
        "args": ["-c", 'echo "token $ATLAS_PAT was refused" >&2; exit 1'],
        "env": ["ATLAS_PAT"],
    }
    agent = write_agent(tmp_path, [entry])
    caplog.set_level(logging.INFO, logger="duragent.mcp")

    assert await tools_by_name(hub, agent) == {}

    [status] = hub.statuses("helper")
    assert status.error is not None
    assert status.error.endswith("its stderr said: token [REDACTED:ATLAS_PAT] was refused")
    logged = [record.getMessage() for record in caplog.records]
    assert any("token [REDACTED:ATLAS_PAT] was refused" in message for message in logged), logged
    assert not any(PAT in message for message in logged)
