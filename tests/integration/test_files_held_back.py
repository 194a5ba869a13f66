"""What `/readyz`, `doctor` and `serve status` say of files left out of commits for a secret:
each while it still holds one, never a secret itself."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from duragent.config import load_config
from duragent.scaffold import init_workspace
from duragent.workspace import Workspace

TOKEN = "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8"  # GitHub's token shape: a secret by its look


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    opened = Workspace(load_config())
    yield opened
    asyncio.run(opened.close())  # (its committer's thread)


def test_a_file_is_listed_while_it_holds_a_secret_and_not_once_it_no_longer_does(
    workspace: Workspace,
) -> None:
    daily = workspace.config.data_path / "memory" / "assistant" / "2026-12-07.md"
    daily.parent.mkdir(parents=True, exist_ok=True)
    daily.write_text(f"- pasted by hand: {TOKEN}\n")
    workspace.committer.held_back["memory/assistant/2026-12-07.md"] = ("GITHUB_TOKEN",)

    [line] = workspace.files_held_back()
    assert line.startswith(
        "memory/assistant/2026-12-07.md is not committed: it holds a secret (GITHUB_TOKEN)"
    )

    # taken out, and committed by the other committer (or back as committed): this one would never
    # screen it again, and it stayed listed until a restart
    daily.write_text("- I like hiking\n")
    assert workspace.files_held_back() == []


def test_a_secret_committed_before_is_not_taken_for_one_held_back(workspace: Workspace) -> None:
    """Only what a file adds to its committed version is screened, as the committers do: a secret
    already in HEAD (committed before the guard knew it) kept the file listed after its commit."""
    data = workspace.config.data_path
    daily = data / "memory" / "assistant" / "2026-12-06.md"
    daily.parent.mkdir(parents=True, exist_ok=True)
    daily.write_text(f"- from long ago: {TOKEN}\n")
    subprocess.run(["git", "-C", str(data), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(data), "commit", "-qm", "before the guard"], check=True)
    daily.write_text(f"- from long ago: {TOKEN}\n- a new line\n")
    workspace.committer.held_back["memory/assistant/2026-12-06.md"] = ("GITHUB_TOKEN",)

    assert workspace.files_held_back() == []


def test_a_secret_in_a_held_back_file_s_name_is_not_said(workspace: Workspace) -> None:
    named = workspace.config.data_path / "artifacts" / f"inbox-{TOKEN}.txt"
    named.parent.mkdir(parents=True, exist_ok=True)
    named.write_text("an upload\n")
    workspace.committer.held_back[f"artifacts/inbox-{TOKEN}.txt"] = ("GITHUB_TOKEN",)

    [line] = workspace.files_held_back()
    assert TOKEN not in line
    assert "artifacts/inbox-[REDACTED:GITHUB_TOKEN].txt is not committed" in line


def test_a_repository_without_a_commit_yet_is_asked_without_an_error(workspace: Workspace) -> None:
    """/readyz answered 404 on a data directory whose first commit had been refused: asking for
    the file's version in a HEAD that does not exist yet raised."""
    data = workspace.config.data_path
    shutil.rmtree(data / ".git")
    subprocess.run(["git", "-C", str(data), "init", "-q"], check=True)
    daily = data / "memory" / "assistant" / "2026-12-05.md"
    daily.parent.mkdir(parents=True, exist_ok=True)
    daily.write_text(f"- pasted: {TOKEN}\n")
    workspace.committer.held_back["memory/assistant/2026-12-05.md"] = ("GITHUB_TOKEN",)

    [line] = workspace.files_held_back()
    assert line.startswith("memory/assistant/2026-12-05.md is not committed")


def test_a_file_committed_by_hand_is_no_longer_listed(workspace: Workspace) -> None:
    """The verdict was kept by the file's stat alone: a `git commit` by hand, the file unchanged,
    left it listed until the file was next touched."""
    data = workspace.config.data_path
    daily = data / "memory" / "assistant" / "2026-12-04.md"
    daily.parent.mkdir(parents=True, exist_ok=True)
    daily.write_text(f"- pasted: {TOKEN}\n")
    workspace.committer.held_back["memory/assistant/2026-12-04.md"] = ("GITHUB_TOKEN",)
    assert workspace.files_held_back() != []

    subprocess.run(["git", "-C", str(data), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(data), "commit", "-qm", "by hand"], check=True)

    assert workspace.files_held_back() == []
