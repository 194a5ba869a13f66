"""A person who pastes an API key into memory with `duragent memory edit` is told the file was
saved but not committed because of the secret (the data repo never gets it), not "nothing new to
commit"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from duragent.cli import build_app
from duragent.scaffold import init_workspace

KEY = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"


def test_an_edit_holding_a_secret_is_saved_and_reported_as_not_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import sys\n"
        "path = sys.argv[1]\n"
        "text = open(path).read()\n"
        f"open(path, 'w').write(text + '- deploy token {KEY}\\n')\n"
    )

    result = CliRunner().invoke(
        build_app(),
        ["memory", "edit", "--long-term"],
        env={"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""},
    )

    assert result.exit_code == 0, result.output
    memory_md = tmp_path / "ws" / ".duragent" / "memory" / "assistant" / "MEMORY.md"
    assert KEY in memory_md.read_text()
    assert "nothing new to commit" not in result.output
    assert "not committed: it contains a secret (GITHUB_TOKEN)" in result.output
    history = subprocess.run(
        ["git", "-C", str(tmp_path / "ws" / ".duragent"), "log", "-p", "--all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert KEY not in history
