"""`duragent diff` and `show` name every line a person adds to a memory file, wherever it sits."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from duragent.cli import build_app
from duragent.config import load_config
from duragent.scaffold import init_workspace
from duragent.workspace import Workspace


def run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    return tmp_path / "ws" / ".duragent"


async def commit_offline_edits() -> None:
    """What a workspace's committer does first: commit what a person changed while nothing ran."""
    async with Workspace(load_config()) as workspace:
        assert workspace.commit_offline_edits() is not None


def test_a_bullet_added_above_the_first_section_of_memory_md_is_shown_as_added(data: Path) -> None:
    memory = data / "memory" / "assistant" / "MEMORY.md"  # a title and prose, no `## ` section yet
    memory.write_text(memory.read_text() + "\n- The user's name is Ada\n")

    uncommitted = run("diff")

    assert uncommitted.exit_code == 0, uncommitted.output
    assert "memory/assistant/MEMORY.md (modified)\n  (other text)\n  + - The user's name is Ada" in (
        uncommitted.output
    )
    assert "whitespace or order only" not in uncommitted.output

    asyncio.run(commit_offline_edits())
    shown = run("show", "HEAD")
    assert "memory/assistant/MEMORY.md" in git(data, "show", "--stat", "HEAD")
    assert "  + - The user's name is Ada" in shown.output
    assert "whitespace or order only" not in shown.output
    assert json.loads(run("show", "HEAD", "--json").output)["files"][0]["text_added"] == [
        "- The user's name is Ada"
    ]


def test_a_section_heading_added_alone_is_shown_as_added(data: Path) -> None:
    memory = data / "memory" / "assistant" / "MEMORY.md"
    memory.write_text(memory.read_text() + "\n## People\n")

    result = run("diff")

    assert "  (other text)\n  + ## People" in result.output
    assert "whitespace or order only" not in result.output


def test_a_line_written_right_under_a_bullet_is_part_of_it_and_not_shown_twice(data: Path) -> None:
    memory = data / "memory" / "assistant" / "MEMORY.md"
    memory.write_text(memory.read_text() + "\n## People\n- Ada\n")
    asyncio.run(commit_offline_edits())
    memory.write_text(memory.read_text() + "likes tea\n")  # a lazy continuation of the bullet

    result = run("diff")

    assert "  ## People\n  + Ada / likes tea\n  - Ada" in result.output
    assert "(other text)" not in result.output


def test_whitespace_only_changes_are_still_called_so(data: Path) -> None:
    memory = data / "memory" / "assistant" / "MEMORY.md"
    memory.write_text(memory.read_text() + "\n\n\n")

    assert "  (whitespace or order only)" in run("diff").output
