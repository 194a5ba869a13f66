"""`duragent gc` run while the server commits: `git gc --prune=now` deletes every object no ref
reaches yet, which includes the files and trees of a commit being built; it must wait for that
commit, never leave HEAD pointing at a commit whose objects are gone."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from duragent.vcs.repo import GitRepo
from duragent.vcs.revisions import gc_repository


def test_gc_while_commits_are_made_keeps_every_object_they_need(tmp_path: Path) -> None:
    root = tmp_path / "data"
    GitRepo.open_or_init(root)
    stop = threading.Event()
    commits: list[str] = []
    errors: list[str] = []

    def server_commits() -> None:
        repo = GitRepo.open_or_init(root, create=False)  # (its own object, as another process's)
        turn = 0
        # (a pause between commits, as a server's debounce makes, lets gc take the lock)
        while not stop.wait(0.03):
            turn += 1
            events = root / "sessions" / f"s{turn % 4}" / "events.jsonl"
            events.parent.mkdir(parents=True, exist_ok=True)
            with events.open("a") as file:
                file.write(f'{{"seq": {turn}, "text": "{"x" * (turn % 89)}"}}\n')
            try:
                sha = repo.commit_paths([events], f"session s{turn % 4}: +1 event")
            except Exception as error:  # what the committer would log and retry
                errors.append(repr(error))
            else:
                commits.append(sha or "")

    committing = threading.Thread(target=server_commits)
    committing.start()
    try:
        gc = GitRepo.open_or_init(root, create=False)
        runs = 0
        deadline = time.monotonic() + 120
        while (runs < 3 or len(commits) < 6) and time.monotonic() < deadline:
            report = gc_repository(gc)
            assert report.git_after > 0
            runs += 1
    finally:
        stop.set()
        committing.join()

    fsck = subprocess.run(["git", "-C", str(root), "fsck", "--full"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    assert errors == []
    assert len(commits) >= 6
