"""`GitRepo.holding_commits`: a person's command changes files and commits them while every other
committer (another process's repository object) waits; its own commits inside go through."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from duragent.vcs.repo import GitRepo, RepoLocked


def test_commits_inside_the_hold_go_through_and_others_wait_until_it_ends(tmp_path: Path) -> None:
    root = tmp_path / "data"
    command = GitRepo.open_or_init(root)
    server = GitRepo.open_or_init(root, create=False)  # (its own object, as another process's)
    server.lock_timeout = 0.3
    note = root / "skills" / "note.md"
    note.parent.mkdir(parents=True)

    with command.holding_commits():
        note.write_text("one\n")
        with pytest.raises(RepoLocked):
            server.commit_paths([note], "edit: skills/note.md")
        assert command.commit_paths([note], "skill note added") is not None
        with command.holding_commits():  # (held again by the same thread: no wait)
            note.write_text("two\n")
            assert command.commit_paths([note], "skill note changed") is not None

    assert server.commit_paths([note], "edit: skills/note.md") is None  # nothing left to commit
    log = subprocess.run(["git", "log", "--format=%s"], cwd=root, capture_output=True, text=True, check=True)
    assert log.stdout.splitlines() == ["skill note changed", "skill note added"]
