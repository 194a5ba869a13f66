"""`duragent mcp list` without a server: each configured server started, its tools listed, stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from duragent.testing.mcp_server import server_entry
from tests.e2e.server_harness import cli, write_workspace

pytestmark = pytest.mark.timeout(180)


def workspace(tmp_path: Path) -> Path:
    config = write_workspace(tmp_path, "http://127.0.0.1:9/v1", git=False, agents={"helper": "continue"})
    agent_yaml = tmp_path / "data" / "agents" / "helper" / "agent.yaml"
    document = yaml.safe_load(agent_yaml.read_text())
    document["spec"]["mcp_servers"] = [
        server_entry("test"),
        {"name": "ghost", "command": "no-such-mcp-here"},
        {"name": "mute", "command": "sleep", "args": ["300"], "start_timeout": "1s"},  # never answers
    ]
    agent_yaml.write_text(yaml.safe_dump(document))
    with config.open("a") as file:
        file.write("mcp_servers:\n  - {name: remote, url: 'http://127.0.0.1:9/mcp', start_timeout: 5s}\n")
    return config


def test_mcp_list_starts_each_server_and_shows_its_state_and_tools(tmp_path: Path) -> None:
    config = workspace(tmp_path)

    listed = cli(config, "mcp", "list", "--agent", "helper", timeout=120)

    assert listed.returncode == 0, listed.stderr
    assert "no server is running" in listed.stderr
    lines = listed.stdout.splitlines()
    ghost = "ghost (agent:helper, stdio: no-such-mcp-here): failed: command not found: no-such-mcp-here"
    assert any(line.startswith(ghost) for line in lines)  # (restarted Nx) while the others started
    test_line = next(line for line in lines if line.startswith("test (agent:helper, stdio: "))
    assert test_line.endswith(": running, 9 tools")
    assert "  test__echo" in lines
    assert any(
        line.startswith("remote (workspace, http: http://127.0.0.1:9/mcp): failed: ") for line in lines
    )
    mute = "mute (agent:helper, stdio: sleep 300): failed: did not start in time (start_timeout)"
    assert any(line.startswith(mute) for line in lines), lines
