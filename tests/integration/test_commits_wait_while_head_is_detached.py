"""A person left the data repository on a detached HEAD (`git checkout <sha>`, a bisect): the
agent's writes must not be committed there, where switching back to the branch would orphan
those commits and delete the files they added from disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from duragent.doctor import check_data_repo
from duragent.stores.base import Change
from duragent.vcs.committer import CommitFailed, Committer
from duragent.vcs.repo import GitRepo, RepoBusy
from duragent.vcs.revisions import RevertConflict, revert_revision


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout


def append(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        file.write(text)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    root = tmp_path / "data"
    repo = GitRepo.open_or_init(root)
    repo.commit_paths([append(root, "memory/assistant/MEMORY.md", "- likes tea\n")], "memory: first")
    return repo


def test_nothing_is_committed_on_a_detached_head_and_switching_back_keeps_the_files(repo: GitRepo) -> None:
    root = repo.root
    branch = git(root, "branch", "--show-current").strip()
    git(root, "checkout", "-q", "--detach", "HEAD")
    events = append(root, "sessions/s1/events.jsonl", '{"seq": 1}\n')

    with pytest.raises(RepoBusy, match="HEAD is detached") as refused:
        repo.commit_paths([events], "session s1: +1 event")
    assert f"git -C {root} switch {branch}" in str(refused.value)
    committer = Committer(repo)
    committer.notify(Change((events,), "session", "s1", "+1 event"))
    with pytest.raises(CommitFailed, match="HEAD is detached"):
        committer.flush()
    assert git(root, "log", "--all", "--format=%s") == "memory: first\n"

    git(root, "switch", "-q", branch)  # the person goes back: the session's log is still there
    assert events.read_text() == '{"seq": 1}\n'
    committer.flush()
    assert git(root, "log", "--format=%s") == "session s1: +1 event\nmemory: first\n"


def test_revert_refuses_on_a_detached_head_and_writes_nothing(repo: GitRepo) -> None:
    root = repo.root
    memory = root / "memory/assistant/MEMORY.md"
    added = repo.commit_paths(
        [append(root, "memory/assistant/MEMORY.md", "- likes coffee\n")], "memory: more"
    )
    assert added is not None
    git(root, "checkout", "-q", "--detach", "HEAD")

    with pytest.raises(RevertConflict, match="HEAD is detached"):
        revert_revision(repo, added)
    assert memory.read_text() == "- likes tea\n- likes coffee\n"


def test_doctor_says_the_head_is_detached_and_how_to_go_back(repo: GitRepo) -> None:
    root = repo.root
    branch = git(root, "branch", "--show-current").strip()
    git(root, "checkout", "-q", "--detach", "HEAD")

    check = check_data_repo(root)

    assert check.status == "warn"
    assert check.message.startswith(f"HEAD is detached (at {repo.head()[:10]}) in {root}")  # type: ignore[index]
    assert f"git -C {root} switch {branch}" in check.message
