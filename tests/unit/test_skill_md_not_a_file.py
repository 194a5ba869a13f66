"""A SKILL.md that is a named pipe or a link to a device is a problem of that skill, not a read
that never ends (every turn scans the skill folders)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from duragent.errors import ConfigError
from duragent.skills.discovery import discover_skills
from duragent.skills.skill import load_skill

pytestmark = pytest.mark.timeout(20)


def test_a_skill_md_that_is_a_named_pipe_or_a_link_to_dev_zero_is_reported_not_read(tmp_path: Path) -> None:
    (tmp_path / "skills" / "piped").mkdir(parents=True)
    os.mkfifo(tmp_path / "skills" / "piped" / "SKILL.md")
    (tmp_path / "skills" / "zeros").mkdir()
    (tmp_path / "skills" / "zeros" / "SKILL.md").symlink_to("/dev/zero")

    with pytest.raises(ConfigError) as caught:
        load_skill(tmp_path / "skills" / "piped")
    found = discover_skills(None, tmp_path)

    assert str(caught.value) == f"{tmp_path / 'skills' / 'piped' / 'SKILL.md'}: not a regular file"
    assert found.skills == {}
    assert sorted(str(problem) for problem in found.problems) == [
        f"{tmp_path / 'skills' / name / 'SKILL.md'}: not a regular file" for name in ("piped", "zeros")
    ]
