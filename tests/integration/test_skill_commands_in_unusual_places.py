"""`duragent skill add|remove` where the places are not the usual ones: an agents folder outside
the data repository, a temporary folder reached through a link (/var/folders on macOS)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from duragent.skills.install import add_skill
from tests.integration.test_cli_skill import exit_code, git, run, skill_repository, workspace
from tests.unit.test_skills import write_skill

__all__ = ["workspace"]  # the fixture, imported to be used here


def test_skill_add_and_remove_for_an_agent_kept_outside_the_data_repository(
    workspace: Path, tmp_path: Path
) -> None:
    (workspace / ".duragent" / "agents").rename(workspace / "agents")
    config = workspace / "duragent.yaml"
    config.write_text(config.read_text().replace("path: ./.duragent/agents", "path: ./agents"))
    git(workspace / ".duragent", "add", "-A")
    git(workspace / ".duragent", "commit", "-q", "-m", "agents moved out")
    source = write_skill(tmp_path / "mine", "tea-timer")

    added = run("skill", "add", str(source), "--agent", "assistant")
    removed = run("skill", "remove", "tea-timer", "--agent", "assistant")

    assert exit_code(added) == 0, added.output
    assert "added skill 'tea-timer' to agent assistant: agents/assistant/skills/tea-timer" in added.stdout
    assert "not in the data repository" in added.stdout
    assert exit_code(removed) == 0, removed.output
    assert "removed skill 'tea-timer' (1 file)" in removed.stdout
    assert not (workspace / "agents" / "assistant" / "skills" / "tea-timer").exists()
    assert git(workspace / ".duragent", "log", "-1", "--format=%s") == "agents moved out\n"


def test_skill_add_with_path_clones_into_a_temporary_folder_reached_through_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "real-tmp").mkdir()
    (tmp_path / "linked-tmp").symlink_to(tmp_path / "real-tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "linked-tmp"))
    repo = skill_repository(tmp_path)

    installed = add_skill(repo.as_uri(), tmp_path / "skills", subpath="skills/release-notes")

    assert installed.skill.name == "release-notes"
    assert (tmp_path / "skills" / "release-notes" / "scripts" / "collect.sh").is_file()


def test_skill_add_of_a_file_says_to_give_the_folder(workspace: Path, tmp_path: Path) -> None:
    source = write_skill(tmp_path / "mine", "tea-timer")
    archive = tmp_path / "tea-timer.zip"
    archive.write_bytes(b"PK\x03\x04")

    of_skill_md = run("skill", "add", str(source / "SKILL.md"))
    of_archive = run("skill", "add", str(archive))

    assert exit_code(of_skill_md) == 2
    assert (
        str(of_skill_md.exception)
        == f"{source / 'SKILL.md'} is the skill's SKILL.md: give its folder ({source})"
    )
    assert exit_code(of_archive) == 2
    assert "is a file, not a folder: give a skill folder (unpack an archive first)" in str(
        of_archive.exception
    )
    assert not (workspace / ".duragent" / "skills" / "tea-timer").exists()


def test_skill_remove_in_the_wrong_place_names_the_command_for_where_the_skill_is(
    workspace: Path, tmp_path: Path
) -> None:
    assert (
        exit_code(run("skill", "add", str(write_skill(tmp_path, "tea-timer")), "--agent", "assistant")) == 0
    )

    without_agent = run("skill", "remove", "tea-timer")
    with_agent = run("skill", "remove", "meeting-notes", "--agent", "assistant")

    assert exit_code(without_agent) == 1
    assert str(without_agent.exception).endswith(
        "('tea-timer' is agent assistant's own: duragent skill remove tea-timer --agent assistant)"
    )
    assert exit_code(with_agent) == 1
    assert str(with_agent.exception).endswith(
        "('meeting-notes' is a workspace skill: duragent skill remove meeting-notes)"
    )
    assert (workspace / ".duragent" / "agents" / "assistant" / "skills" / "tea-timer" / "SKILL.md").is_file()


def test_skill_show_of_an_invalid_skill_says_what_is_wrong_with_it(workspace: Path) -> None:
    write_skill(workspace / ".duragent" / "skills", "half-done", front="name: half-done\n")

    shown = run("skill", "show", "half-done")

    assert exit_code(shown) == 2
    assert str(shown.exception) == ".duragent/skills/half-done/SKILL.md:2:1: description is required"


def test_a_repository_whose_root_is_one_skill_named_otherwise_is_added_under_the_skills_name(
    workspace: Path, tmp_path: Path
) -> None:
    repo = write_skill(tmp_path, "pdf-skill", front="name: pdf\ndescription: Fill in PDF forms.\n")
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "skill"]):
        git(repo, *command)

    added = run("skill", "add", repo.as_uri())

    assert exit_code(added) == 0, added.output
    assert "added skill 'pdf' to the workspace: .duragent/skills/pdf" in added.stdout
    assert (workspace / ".duragent" / "skills" / "pdf" / "SKILL.md").is_file()


def test_skill_remove_of_a_linked_skill_removes_the_link_and_keeps_the_folder_it_points_to(
    workspace: Path, tmp_path: Path
) -> None:
    shared = write_skill(tmp_path / "shared", "tea-timer")
    link = workspace / ".duragent" / "skills" / "tea-timer"
    link.symlink_to(shared)

    removed = run("skill", "remove", "tea-timer")

    assert exit_code(removed) == 0, removed.output
    assert "removed skill 'tea-timer' (1 file)" in removed.stdout
    assert not link.is_symlink()
    assert (shared / "SKILL.md").is_file()


@pytest.mark.timeout(60)
def test_a_repository_whose_skill_md_links_to_dev_zero_is_refused_not_read(
    workspace: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "zeros"
    repo.mkdir()
    (repo / "SKILL.md").symlink_to("/dev/zero")
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "skill"]):
        git(repo, *command)

    added = run("skill", "add", repo.as_uri())

    assert exit_code(added) == 2
    assert "no SKILL.md found" in str(added.exception)
