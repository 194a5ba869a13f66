"""`duragent skill add /srv/git/skills.git`: a bare repository on disk (what one clones from) is
cloned like a `file://` URL, not read as a folder of skills."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.test_cli_skill import git, skill_repository, workspace

__all__ = ["workspace"]  # the fixture, imported to be used here


def test_a_bare_repository_on_disk_is_cloned_and_its_skill_added(workspace: Path, tmp_path: Path) -> None:
    bare = tmp_path / "skills.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(skill_repository(tmp_path)), str(bare)], check=True)

    added = subprocess.run(
        [sys.executable, "-m", "duragent", "skill", "add", str(bare), "--path", "skills/release-notes"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert added.returncode == 0, added.stderr
    installed = workspace / ".duragent" / "skills" / "release-notes"
    assert (installed / "scripts" / "collect.sh").read_text() == "git log --oneline\n"
    assert f"skill release-notes added from {bare}" in git(
        workspace / ".duragent", "log", "-1", "--format=%B"
    )
