"""A person's memory edits while a rebase is in progress in the data repository: nothing stops,
nothing is lost, and the edits are committed as theirs once the rebase ends."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from duragent.cli import build_app
from duragent.config import load_config
from duragent.scaffold import init_workspace
from duragent.stores.base import utcnow
from duragent.vcs import watch
from duragent.vcs.watch import HumanEditWatcher
from duragent.workspace import Workspace
from tests.waiting import until

PERSON = "Test Person <person@example.test>"


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    return tmp_path / "ws"


@pytest.fixture
def data(root: Path) -> Path:
    return root / ".duragent"


@pytest.fixture
async def workspace(root: Path) -> AsyncIterator[Workspace]:
    opened = Workspace(load_config(root / "duragent.yaml"))
    yield opened
    await opened.close()


def rebase_in_progress(data: Path) -> Path:
    marker = data / ".git" / "rebase-merge"
    marker.mkdir()
    return marker


async def test_the_watcher_starts_during_a_rebase_and_commits_the_edit_once_it_ends(
    workspace: Workspace, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "RETRY_DELAY", 0.05, raising=False)
    daily = data / "memory" / "assistant" / "2026-11-20.md"
    daily.write_text("# 2026-11-20\n\n## Facts Stored\n- written while nothing ran\n")
    marker = rebase_in_progress(data)
    watcher = HumanEditWatcher(workspace, debounce=0.05)

    await watcher.start()  # (raised RepoBusy: the server did not start)
    try:
        marker.rmdir()  # the person finishes the rebase
        await until(lambda: watcher.commits)
    finally:
        await watcher.stop()

    assert (
        git(data, "log", "-1", "--format=%an <%ae>%n%s")
        == f"{PERSON}\nedit: memory/assistant/2026-11-20.md\n"
    )
    assert git(data, "status", "--porcelain").strip() == ""


async def test_an_edit_seen_during_a_rebase_is_committed_once_it_ends(
    workspace: Workspace, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "RETRY_DELAY", 0.05, raising=False)
    watcher = HumanEditWatcher(workspace, debounce=0.05)
    await watcher.start()
    try:
        marker = rebase_in_progress(data)
        daily = data / "memory" / "assistant" / "2026-11-21.md"
        daily.write_text("# 2026-11-21\n\n## Facts Stored\n- saved in the editor during a rebase\n")
        await until(lambda: "memory/assistant/2026-11-21.md" in watcher.examined)
        assert watcher.commits == []
        marker.rmdir()
        # (was dropped after the failed commit: left uncommitted until the file changed again)
        await until(lambda: watcher.commits)
    finally:
        await watcher.stop()

    assert git(data, "log", "-1", "--format=%s") == "edit: memory/assistant/2026-11-21.md\n"


def test_memory_commands_work_during_a_rebase_and_the_next_one_after_commits(root: Path, data: Path) -> None:
    daily = data / "memory" / "assistant" / "2026-11-22.md"
    daily.write_text("# 2026-11-22\n\n## Facts Stored\n- written in vim before the rebase\n")
    marker = rebase_in_progress(data)

    shown = run("memory", "show", "--date", "2026-11-22")
    assert shown.exit_code == 0, shown.output  # (was: error: a rebase is in progress)
    assert "written in vim before the rebase" in shown.stdout
    assert "not committed yet: a rebase is in progress" in shown.stderr

    added = run("memory", "add", "Ships on Fridays")
    # saved, so not an error a script would retry (and add the entry twice)
    assert added.exit_code == 0, added.output
    assert "but not committed yet: a rebase is in progress" in added.stdout
    head = git(data, "rev-parse", "HEAD")

    marker.rmdir()
    assert run("memory", "search", "Fridays").exit_code == 0

    assert git(data, "rev-parse", "HEAD~1") == head
    assert (
        git(data, "log", "-1", "--format=%an <%ae>%n%s") == f"{PERSON}\nedit: 2 files in memory/assistant\n"
    )
    assert git(data, "status", "--porcelain").strip() == ""
    today = daily.parent / f"{utcnow().date().isoformat()}.md"
    assert today.read_text().count("Ships on Fridays") == 1


def test_revert_during_a_rebase_writes_nothing_and_says_why(root: Path, data: Path) -> None:
    from duragent.vcs.revisions import RevertConflict

    assert run("memory", "add", "Ships on Fridays").exit_code == 0
    today = data / "memory" / "assistant" / f"{utcnow().date().isoformat()}.md"
    before = today.read_bytes()
    head = git(data, "rev-parse", "HEAD")
    rebase_in_progress(data)

    reverted = run("revert", "--yes", "HEAD")

    assert isinstance(reverted.exception, RevertConflict), reverted.output
    assert "while a rebase is in progress" in str(reverted.exception)
    # (was: the bullet removed on disk, then "error: a rebase is in progress", the removal left
    # to be committed later as an edit rather than as the revert)
    assert today.read_bytes() == before
    assert git(data, "status", "--porcelain").strip() == ""
    assert git(data, "rev-parse", "HEAD") == head


def test_an_index_lock_a_killed_git_left_is_named_at_once(root: Path, data: Path) -> None:
    lock = data / ".git" / "index.lock"
    lock.write_text("")
    old = time.time() - 300
    os.utime(lock, (old, old))
    started = time.monotonic()

    added = run("memory", "add", "Ships on Fridays")

    # (was: twice a 10 s wait, then "has been held for 10 s by another git process")
    assert time.monotonic() - started < 5
    assert added.exit_code == 0, added.output
    assert (
        f"not committed yet: {lock} is 5 min old and blocks every commit; if no git command" in added.stdout
    )
    assert f"rm {lock}" in added.stdout
