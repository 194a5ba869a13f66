"""`duragent mcp list` in a fresh workspace (no MCP server anywhere) says so, and only that."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DURAGENT = Path(sys.executable).with_name("duragent")


def duragent(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DURAGENT), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_mcp_list_without_servers_does_not_announce_starting_them(tmp_path: Path) -> None:
    assert duragent(tmp_path, "init", "--yes", "--provider", "demo", "--no-git").returncode == 0

    listed = duragent(tmp_path, "mcp", "list")
    as_json = duragent(tmp_path, "mcp", "list", "--json")

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == "no MCP servers configured (mcp_servers in duragent.yaml or an agent's spec)\n"
    assert listed.stderr == ""
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == []
    assert as_json.stderr == ""
