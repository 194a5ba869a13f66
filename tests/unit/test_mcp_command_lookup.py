"""An MCP server's command is looked up as its own start would find it: a relative PATH entry
(`node_modules/.bin` in the server's env) is relative to the folder the MCP server runs in."""

from __future__ import annotations

from pathlib import Path

import pytest

from duragent.mcp.connection import _found


def test_a_relative_path_entry_is_looked_up_in_the_mcp_servers_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir, elsewhere = tmp_path / "mcp-server", tmp_path / "where-serve-runs"
    (workdir / "bin").mkdir(parents=True)
    (elsewhere / "bin").mkdir(parents=True)
    tool = workdir / "bin" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.chdir(elsewhere)

    assert _found("tool", "bin:/usr/bin", workdir) == str(tool)
    with pytest.raises(FileNotFoundError, match="tool"):
        _found("tool", "/usr/bin", workdir)
