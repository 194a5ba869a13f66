"""`duragent revert` asking for confirmation says which files the revert deletes (those the
commit created: an agent's definition, its MEMORY.md) and which it brings back, before anything
is done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DURAGENT = Path(sys.executable).with_name("duragent")


def duragent(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DURAGENT), *args], cwd=cwd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_reverting_the_commit_that_created_an_agent_names_the_files_it_deletes(tmp_path: Path) -> None:
    assert duragent(tmp_path, "init", "--yes", "--provider", "demo").returncode == 0

    asked = duragent(tmp_path, "revert", "HEAD")

    assert asked.returncode == 2
    lines = asked.stdout.splitlines()
    assert "  agents/assistant/agent.yaml (deleted: that commit created it)" in lines
    assert "  memory/assistant/MEMORY.md (deleted: that commit created it)" in lines
    assert (tmp_path / ".duragent" / "agents" / "assistant" / "agent.yaml").is_file()


def test_reverting_a_deletion_says_the_files_come_back(tmp_path: Path) -> None:
    assert duragent(tmp_path, "init", "--yes", "--provider", "demo").returncode == 0
    assert duragent(tmp_path, "revert", "HEAD", "--yes").returncode == 0

    asked = duragent(tmp_path, "revert", "HEAD")

    assert asked.returncode == 2
    assert "  agents/assistant/SOUL.md (restored: that commit deleted it)" in asked.stdout.splitlines()
    assert not (tmp_path / ".duragent" / "agents" / "assistant" / "SOUL.md").exists()
