"""A terminal 40 columns wide: the spinner stays on one row, whatever the tool it names.

The spinner is redrawn over itself with a carriage return and erased with `ESC [K`: both act on
one row. `⠋ running <tool>…` for a tool whose name (an MCP server's `server__tool`, a tool
folder) did not fit wrapped, and every frame left its first row behind on the screen.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pexpect

from duragent.testing.fake_llm import text, tool_calls
from tests.e2e.screen import Screen
from tests.e2e.terminal import DURAGENT, PATIENCE, client_env
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, fake_model, server, workspace

__all__ = ["fake_model", "server", "workspace"]  # the fixtures this test uses

COLUMNS, LINES = 40, 30
TOOL = "summarise_every_file_in_the_workspace"


def test_the_spinner_naming_a_long_tool_stays_on_one_row_and_is_erased(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM, tmp_path: Path
) -> None:
    # A tool folder whose program runs until the test has seen the spinner.
    go = tmp_path / "go"
    tool = workspace / ".duragent" / "tools" / TOOL
    tool.mkdir(parents=True)
    (tool / "run").write_text(f"#!/bin/sh\nwhile [ ! -e {go} ]; do sleep 0.05; done\necho summarised\n")
    (tool / "run").chmod(0o755)
    policy = workspace / ".duragent" / "agents" / "helper" / "policy.yaml"
    policy.write_text(policy.read_text() + f'  - "{TOOL}:*"\n')
    fake_model.enqueue(tool_calls([(TOOL, {"args": "all"})]), text("Summarised."))

    child = pexpect.spawn(
        DURAGENT[0],
        [*DURAGENT[1:], "send", "summarise"],
        cwd=str(workspace),
        env=client_env(COLUMNS=str(COLUMNS), LINES=str(LINES)),
        encoding="utf-8",
        timeout=PATIENCE,
        dimensions=(LINES, COLUMNS),
    )
    written = io.StringIO()
    child.logfile_read = written
    child.expect("running summarise")
    child.expect("running summarise")  # drawn again: the spinner turns
    go.touch()
    child.expect(pexpect.EOF)
    child.close()
    output = written.getvalue()
    assert child.exitstatus == 0, output

    screen = Screen(COLUMNS, LINES)
    screen.feed(output)
    shown = screen.text()
    assert "running" not in shown, shown
    assert f"⚙ {TOOL}" in shown
    assert "args=all … ok" in shown
    assert "Summarised." in shown
