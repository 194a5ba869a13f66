"""A memory file saved with Windows line endings, edited in the dashboard's editor."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from duragent.config import load_config
from duragent.memory.files import read_memory_file, save_memory_file, text_stamp
from duragent.scaffold import init_workspace
from duragent.workspace import Workspace

WINDOWS_DAY = b"# 2026-11-25\r\n\r\n## Facts Stored\r\n- Office is in Lisbon\r\n"


def test_a_crlf_file_stays_crlf_and_the_commit_holds_only_the_added_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    data = tmp_path / "ws" / ".duragent"
    path = data / "memory" / "assistant" / "2026-11-25.md"
    path.write_bytes(WINDOWS_DAY)
    workspace = Workspace(load_config())
    workspace.commit_offline_edits()

    shown = read_memory_file(workspace, "assistant", "2026-11-25.md")  # what the editor shows
    saved = save_memory_file(
        workspace, "assistant", "2026-11-25.md", shown + "- Team meets on Mondays\n", opened=text_stamp(shown)
    )

    # (was: every line rewritten with LF)
    assert path.read_bytes() == WINDOWS_DAY + b"- Team meets on Mondays\r\n"
    assert saved.sha is not None
    stat = subprocess.run(
        ["git", "-C", str(data), "show", "--numstat", "--format=", saved.sha],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert stat.split() == ["1", "0", "memory/assistant/2026-11-25.md"]
