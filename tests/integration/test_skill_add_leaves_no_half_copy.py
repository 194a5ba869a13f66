"""`duragent skill add` as a user runs it (a real process): a source it cannot copy whole is
refused by name and leaves nothing behind, and a link that would lead out of the installed copy
is refused like any link out of the skill."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.test_cli_skill import git, workspace
from tests.unit.test_skills import write_skill

__all__ = ["workspace"]  # the fixture, imported to be used here


def duragent(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "duragent", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_a_skill_holding_a_named_pipe_is_refused_by_name_and_nothing_is_left_behind(
    workspace: Path, tmp_path: Path
) -> None:
    source = write_skill(tmp_path, "piped")
    (source / "notes.txt").write_text("steps\n")
    os.mkfifo(source / "inbox")
    head = git(workspace / ".duragent", "rev-parse", "HEAD")

    refused = duragent("skill", "add", str(source), cwd=workspace)

    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith("error: inbox is not a file, folder or link (a named pipe)"), (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr
    assert sorted(os.listdir(workspace / ".duragent" / "skills")) == ["meeting-notes"]
    assert git(workspace / ".duragent", "rev-parse", "HEAD") == head

    (source / "inbox").unlink()
    added = duragent("skill", "add", str(source), cwd=workspace)
    assert added.returncode == 0, added.stderr
    assert sorted(os.listdir(workspace / ".duragent" / "skills" / "piped")) == ["SKILL.md", "notes.txt"]


def test_a_link_by_absolute_path_into_the_source_folder_is_refused(workspace: Path, tmp_path: Path) -> None:
    """Copied as it is, it would point back at the source folder, outside the installed skill."""
    source = write_skill(tmp_path, "pointing")
    (source / "reference").mkdir()
    (source / "reference" / "guide.md").write_text("read me\n")
    (source / "guide").symlink_to(source / "reference" / "guide.md")
    (source / "relative").symlink_to("reference/guide.md")

    refused = duragent("skill", "add", str(source), cwd=workspace)

    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith(f"error: guide links by an absolute path ({source}/reference/guide.md)")
    assert not (workspace / ".duragent" / "skills" / "pointing").exists()

    (source / "guide").unlink()
    added = duragent("skill", "add", str(source), cwd=workspace)
    assert added.returncode == 0, added.stderr
    assert (workspace / ".duragent" / "skills" / "pointing" / "relative").read_text() == "read me\n"
