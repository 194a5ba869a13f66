"""Text a model wrote reaches the terminal with its control characters shown, never obeyed.

A carriage return and `ESC [2K` erase what came before on the line: a command waiting for
approval read as a harmless one in `/status`, and `session export --format md` retitled the
window and cleared the screen of whoever read the transcript. Both are written as escapes now,
as every other place that prints such text does (docs/security.md, 3a).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from duragent.testing.fake_llm import text, tool_calls
from tests.e2e.terminal import Terminal
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, duragent, fake_model, server, workspace

__all__ = ["fake_model", "server", "workspace"]  # the fixtures these tests use

DISGUISED = "rm -rf build\r\x1b[2Kls -la"


def test_status_shows_the_waiting_command_with_its_control_characters_written_out(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(tool_calls([("bash", {"command": DISGUISED})]), text("Done."))
    term = Terminal(["chat"], workspace)
    term.prompt()
    term.type("tidy up")
    term.expect(r"approval needed: bash rm -rf build\\r\\x1b\[2Kls -la")
    term.question()
    term.child.sendintr()  # left waiting
    term.expect("left waiting")
    term.prompt()
    term.type("/status")
    waiting = term.expect(r"waiting .*")
    term.prompt()
    term.type("/deny")
    term.expect("denied")
    term.prompt()
    term.child.sendcontrol("d")
    term.finish()

    assert r"approval of bash rm -rf build\r\x1b[2Kls -la" in waiting, waiting


def test_a_markdown_export_writes_control_characters_as_escapes(
    workspace: Path, server: dict[str, Any], fake_model: ThreadedFakeLLM
) -> None:
    fake_model.enqueue(text("title \x1b]0;pwned\x07 and \x1b[2J cleared"))
    sent = duragent(workspace, "send", "--json", "say it")
    session_id = json.loads(sent.stdout)["session_id"]

    markdown = duragent(workspace, "session", "export", session_id, "--format", "md")
    raw = duragent(workspace, "session", "export", session_id)

    assert markdown.returncode == 0, markdown.stderr
    assert "\x1b" not in markdown.stdout
    assert "\x07" not in markdown.stdout
    assert r"title \x1b]0;pwned\x07 and \x1b[2J cleared" in markdown.stdout
    # the log itself, exported as JSON lines, keeps every character (as JSON escapes)
    replies = [json.loads(line) for line in raw.stdout.splitlines()]
    assert any(r["payload"].get("content") == "title \x1b]0;pwned\x07 and \x1b[2J cleared" for r in replies)
