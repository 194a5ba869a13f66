"""The server's git runs no program a person's (or an agent's) global git configuration names.

A tool the person allows (`bash:git config *`) can write `~/.gitconfig`: a filter, a textconv or
an external diff set there would run inside the server when it commits, with its environment
(its API keys). Duragent's git reads only who the person is, what they never commit and which
repositories they trust from that configuration.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from duragent.vcs.committer import Change, Committer
from duragent.vcs.repo import GitRepo


def git(root: Path, *args: str) -> str:
    """git as the person runs it (their whole configuration)."""
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def test_a_filter_and_an_external_diff_in_the_global_config_never_run_when_the_server_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = tmp_path / "ran"
    program = tmp_path / "program.sh"
    program.write_text(f'#!/bin/sh\necho "$DURAGENT_TEST_SECRET" >> {ran}\ncat\n')
    program.chmod(0o755)
    attributes = tmp_path / "attributes"
    attributes.write_text("* filter=evil diff=evil\n")
    ignored = tmp_path / "ignore"
    ignored.write_text("*.private\n")
    home = Path(os.environ["HOME"])
    with (home / ".gitconfig").open("a") as config:
        config.write(
            f"[core]\n\tattributesFile = {attributes}\n\texcludesFile = {ignored}\n"
            f'[filter "evil"]\n\tclean = {program}\n\tsmudge = {program}\n'
            f'[diff "evil"]\n\ttextconv = {program}\n[diff]\n\texternal = {program}\n'
        )
    monkeypatch.setenv("DURAGENT_TEST_SECRET", "sk-server-key")
    root = tmp_path / "data"
    repo = GitRepo.open_or_init(root)
    session = root / "sessions" / "s1"
    session.mkdir(parents=True)
    (session / "events.jsonl").write_text('{"seq": 1}\n')
    (session / "notes.private").write_text("kept out\n")
    committer = Committer(repo)
    committer.notify(Change((session,), "session", "s1", "+1 events"))
    committer.flush()
    (session / "events.jsonl").write_text('{"seq": 1}\n{"seq": 2}\n')
    committer.notify(Change((session,), "session", "s1", "+1 events"))
    committer.flush()

    assert not ran.exists(), "a program of the global configuration ran inside the server"
    # what the person's configuration may still say is kept: what they never commit, who they are
    assert git(root, "ls-tree", "-r", "--name-only", "HEAD").split() == ["sessions/s1/events.jsonl"]
    assert git(root, "log", "-1", "--format=%cn <%ce>").strip() == "Test Person <person@example.test>"
    assert git(root, "cat-file", "blob", "HEAD:sessions/s1/events.jsonl") == '{"seq": 1}\n{"seq": 2}\n'
