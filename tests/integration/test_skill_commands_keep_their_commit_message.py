"""`duragent skill add|remove` beside a running server: the server's edit watcher sees the
skill's files change and commits what it sees as a person's bare edit. The command holds other
commits off from its change to its own commit, so the change is committed once, under the
command's message ("skill NAME removed"), never as "edit: …" with the command's commit empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from duragent.config import load_config
from duragent.skills import install
from duragent.vcs.repo import RepoLocked
from duragent.workspace import Workspace
from tests.integration.test_cli_skill import git, run, workspace
from tests.unit.test_skills import write_skill

__all__ = ["workspace"]  # (the fixture, imported for pytest)


class WatcherBesideTheCommand:
    """What the server's edit watcher does when it sees the skill's files change: commit them
    as the person's edit, from its own repository object (another process's, as far as locks go)."""

    def __init__(self, lock_timeout: float):
        self.edits = Workspace(load_config()).human_edits
        assert self.edits is not None
        self.edits.repo.lock_timeout = lock_timeout
        self.locked_out = 0

    def commit_seen(self, files: list[Path]) -> None:
        assert self.edits is not None
        try:
            self.edits.commit([self.edits.repo.relative(path) for path in files])
        except RepoLocked:
            self.locked_out += 1  # the watcher retries later


def subjects(workspace: Path) -> list[str]:
    return git(workspace / ".duragent", "log", "--format=%s").splitlines()


def test_skill_add_and_remove_commit_under_their_message_while_a_watcher_commits_what_it_sees(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_skill(tmp_path / "mine", "tea-timer", body="Steep for 3 minutes.\n")
    watcher = WatcherBesideTheCommand(lock_timeout=0.3)
    place = install.StagedSkill.place
    remove_skill = install.remove_skill

    def place_and_be_seen(staged: install.StagedSkill) -> install.Installed:
        installed = place(staged)
        watcher.commit_seen(list(installed.files))
        return installed

    def remove_and_be_seen(name: str, skills_dir: Path) -> tuple[Path, ...]:
        files = remove_skill(name, skills_dir)
        watcher.commit_seen(list(files))
        return files

    monkeypatch.setattr(install.StagedSkill, "place", place_and_be_seen)
    monkeypatch.setattr(install, "remove_skill", remove_and_be_seen)

    added = run("skill", "add", str(source))
    assert added.exit_code == 0, added.output
    removed = run("skill", "remove", "tea-timer")
    assert removed.exit_code == 0, removed.output

    assert watcher.locked_out == 2
    watcher.commit_seen([workspace / ".duragent" / "skills" / "tea-timer" / "SKILL.md"])  # its retry
    removal, addition = subjects(workspace)[:2]
    assert removal.endswith("(skill tea-timer removed)"), subjects(workspace)
    assert addition.endswith(f"(skill tea-timer added from {source})"), subjects(workspace)
    assert sum("tea-timer" in subject for subject in subjects(workspace)) == 2, subjects(workspace)
    assert git(workspace / ".duragent", "status", "--porcelain") == ""
