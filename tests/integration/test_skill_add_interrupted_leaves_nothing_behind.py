"""`duragent skill add` killed midway (kill -9) leaves its hidden staging folder behind; the next
`skill add` or `skill remove` in that skills folder removes it, never the folder of an add that is
still running in another process. Real processes: the add is the real command, paused inside its
copy (its file copy waits on stdin) so the test kills it, or lets it go on, at a known moment."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from duragent.errors import UsageError
from duragent.skills import install
from tests.integration.test_cli_skill import git, workspace
from tests.integration.test_skill_add_leaves_no_half_copy import duragent
from tests.unit.test_skills import write_skill

__all__ = ["workspace"]  # the fixture, imported to be used here

#: `duragent ARGS` whose second file copy says `copying` on stdout, then waits for a line on stdin.
ADD_PAUSED_MID_COPY = """
import shutil, sys

copy_file = shutil.copyfile
copied = []

def copy_file_after_a_pause(source, destination, *args, **kwargs):
    copied.append(source)
    if len(copied) == 2:
        print("copying", flush=True)
        sys.stdin.readline()
    return copy_file(source, destination, *args, **kwargs)

shutil.copyfile = copy_file_after_a_pause
sys.argv = ["duragent", *sys.argv[1:]]
from duragent.cli import main
main()
"""


@pytest.fixture
def paused_add(workspace: Path, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A real `duragent skill add` of the skill `release-notes`, paused in the middle of its copy."""
    source = write_skill(tmp_path / "source", "release-notes")
    (source / "template.md").write_text("## Changes\n")
    (source / "checklist.md").write_text("- tag\n")
    add = subprocess.Popen(
        [sys.executable, "-c", ADD_PAUSED_MID_COPY, "skill", "add", str(source)],
        cwd=workspace,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert add.stdout is not None
        assert add.stdout.readline() == "copying\n", add.communicate()
        yield add
    finally:
        if add.poll() is None:
            add.kill()
        add.communicate()


def staging_folders(workspace: Path) -> list[str]:
    return sorted(path.name for path in (workspace / ".duragent" / "skills").glob(".*.adding-*"))


@pytest.mark.parametrize("next_command", ["add", "remove"])
def test_the_folder_of_an_add_killed_midway_is_removed_by_the_next_add_or_remove(
    workspace: Path, tmp_path: Path, paused_add: subprocess.Popen[str], next_command: str
) -> None:
    head = git(workspace / ".duragent", "rev-parse", "HEAD")
    paused_add.send_signal(signal.SIGKILL)
    assert paused_add.wait() == -signal.SIGKILL
    [left] = staging_folders(workspace)
    assert left.startswith(".release-notes.adding-")
    assert (workspace / ".duragent" / "skills" / left / "release-notes" / "SKILL.md").exists()
    assert not (workspace / ".duragent" / "skills" / "release-notes").exists()
    assert git(workspace / ".duragent", "rev-parse", "HEAD") == head
    assert f"skills/{left}/" in git(workspace / ".duragent", "status", "--porcelain")  # litter

    if next_command == "add":
        done = duragent("skill", "add", str(write_skill(tmp_path / "other", "changelog")), cwd=workspace)
    else:
        done = duragent("skill", "remove", "meeting-notes", cwd=workspace)

    assert done.returncode == 0, done.stderr
    assert staging_folders(workspace) == []
    assert git(workspace / ".duragent", "status", "--porcelain") == ""


def test_the_folder_of_an_add_still_running_elsewhere_is_left_alone(
    workspace: Path, tmp_path: Path, paused_add: subprocess.Popen[str]
) -> None:
    [running] = staging_folders(workspace)

    added = duragent("skill", "add", str(write_skill(tmp_path / "other", "changelog")), cwd=workspace)
    removed = duragent("skill", "remove", "meeting-notes", cwd=workspace)

    assert added.returncode == 0, added.stderr
    assert removed.returncode == 0, removed.stderr
    assert staging_folders(workspace) == [running]
    out, err = paused_add.communicate("go on\n", timeout=120)
    assert paused_add.returncode == 0, err
    assert "added skill 'release-notes'" in out
    skills = workspace / ".duragent" / "skills"
    assert sorted(path.name for path in (skills / "release-notes").iterdir()) == [
        "SKILL.md",
        "checklist.md",
        "template.md",
    ]
    assert staging_folders(workspace) == []
    assert git(workspace / ".duragent", "status", "--porcelain") == ""


def test_a_staging_folder_nobody_holds_is_removed_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    skills = tmp_path / "skills"
    skills.mkdir()
    left = Path(tempfile.mkdtemp(prefix=".notes.adding-", dir=skills))  # as an add makes it
    write_skill(left, "notes")
    for person_folder in (".adding-notes", ".ideas.adding-later"):  # not names an add makes: kept
        (skills / person_folder).mkdir()

    with caplog.at_level(logging.INFO, logger="duragent.skills.install"):
        installed = install.add_skill(str(write_skill(tmp_path / "source", "changelog")), skills)

    assert installed.skill.name == "changelog"
    assert sorted(path.name for path in skills.iterdir()) == [
        ".adding-notes",
        ".ideas.adding-later",
        "changelog",
    ]
    assert f"removed {left}, left by a skill add that was interrupted" in caplog.messages


def test_an_add_whose_new_folder_is_swept_before_it_holds_it_makes_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between its creation and its lock, a staging folder has no holder: another add's sweep may
    remove it then (here: as the lock is taken). The add notices and stages in a new folder."""
    skills = tmp_path / "skills"
    skills.mkdir()
    lock_folder = install._lock_folder
    swept: list[Path] = []

    def lock_folder_swept_first(folder: Path) -> int | None:
        lock = lock_folder(folder)
        if not swept:
            swept.append(folder)
            shutil.rmtree(folder)
        return lock

    monkeypatch.setattr(install, "_lock_folder", lock_folder_swept_first)
    with install.staged_skill(str(write_skill(tmp_path / "source", "changelog")), skills) as staged:
        [gone] = swept
        assert gone.name.startswith(".changelog.adding-")
        assert staged.copy.parent != gone
        assert lock_folder(staged.copy.parent) is None  # held: no sweep takes it
        installed = staged.place()

    assert (installed.skill.directory / "SKILL.md").is_file()
    assert sorted(path.name for path in skills.iterdir()) == ["changelog"]


def test_a_filesystem_that_cannot_lock_gets_a_clear_error_and_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """flock refused (ENOLCK on some network filesystems): the add says so, leaves no folder, and a
    remove in that folder still works (its sweep only logs what it cannot check)."""
    skills = tmp_path / "skills"
    skills.mkdir()
    write_skill(skills, "notes")
    Path(tempfile.mkdtemp(prefix=".notes.adding-", dir=skills))  # a killed add's

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(install.fcntl, "flock", no_locks)
    with pytest.raises(UsageError, match=r"could not lock .* to copy the skill into: .*No locks available"):
        install.add_skill(str(write_skill(tmp_path / "source", "changelog")), skills)
    assert not (skills / "changelog").exists()

    with caplog.at_level(logging.WARNING, logger="duragent.skills.install"):
        install.remove_skill("notes", skills)
    assert not (skills / "notes").exists()
    assert any("could not check" in message for message in caplog.messages)


def test_an_add_that_cannot_open_its_new_folders_gives_up_and_leaves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder it made but may not open (a security module's denial): a few attempts, then a
    clear error, and none of the attempts' folders left behind."""
    skills = tmp_path / "skills"
    skills.mkdir()
    opened = os.open

    def denied(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_DIRECTORY and ".adding-" in str(path):
            raise PermissionError(errno.EACCES, "Permission denied")
        return opened(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(install.os, "open", denied)
    with pytest.raises(UsageError, match="could not make a folder to copy the skill into"):
        install.add_skill(str(write_skill(tmp_path / "source", "changelog")), skills)
    assert list(skills.iterdir()) == []
