"""`duragent skill list|show|add|remove` and skills in `agent validate`, with real git."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from duragent.cli import build_app
from tests.unit.test_skills import write_skill
from tests.unit.test_tool_folders import tool_folder

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example workspace as the working directory, its data folder a git repository."""
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root)
    monkeypatch.chdir(root)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        git(root / ".duragent", *command)
    return root


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True).stdout


def run(*args: str) -> Result:
    """Run `duragent ARGS` in-process; a Duragent error stays on `result.exception`."""
    return CliRunner().invoke(build_app(), list(args))


def exit_code(result: Result) -> int:
    """The code the installed command exits with (`main` turns a Duragent error into its exit_code)."""
    return int(getattr(result.exception, "exit_code", result.exit_code))


def skill_repository(tmp_path: Path) -> Path:
    """A git repository holding two skills under skills/."""
    repo = tmp_path / "skill-repo"
    write_skill(repo / "skills", "release-notes", body="# Release notes\n\nUse the git log.\n")
    (repo / "skills" / "release-notes" / "scripts").mkdir()
    (repo / "skills" / "release-notes" / "scripts" / "collect.sh").write_text("git log --oneline\n")
    write_skill(repo / "skills", "code-review")
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "skills"]):
        git(repo, *command)
    return repo


def test_add_copies_a_folder_validates_and_commits_it_as_the_persons_edit(
    workspace: Path, tmp_path: Path
) -> None:
    source = write_skill(tmp_path / "mine", "tea-timer", body="Steep for 3 minutes.\n")

    added = run("skill", "add", str(source))
    listed = run("skill", "list", "--json")

    assert added.exit_code == 0, added.output
    assert "added skill 'tea-timer' to the workspace: .duragent/skills/tea-timer" in added.stdout
    assert (workspace / ".duragent" / "skills" / "tea-timer" / "SKILL.md").is_file()
    log = git(workspace / ".duragent", "log", "-1", "--format=%an%n%s%n%b", "--name-status")
    assert "edit: skills/tea-timer/SKILL.md (skill tea-timer added from" in log
    assert "A\tskills/tea-timer/SKILL.md" in log
    assert "Duragent-Agent" not in log
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["scope"], r["description"]) for r in rows] == [
        ("meeting-notes", "workspace", rows[0]["description"]),  # the example workspace's
        ("tea-timer", "workspace", "Helps with tea-timer."),
    ]


def test_add_clones_one_skill_of_a_repository_for_an_agent_and_remove_takes_it_out(
    workspace: Path, tmp_path: Path
) -> None:
    repo = skill_repository(tmp_path)
    url = f"file://{repo}"

    ambiguous = run("skill", "add", url, "--agent", "assistant")
    added = run("skill", "add", url, "--agent", "assistant", "--path", "skills/release-notes")
    shown = run("skill", "show", "release-notes", "--agent", "assistant")
    removed = run("skill", "remove", "release-notes", "--agent", "assistant")

    assert exit_code(ambiguous) == 2
    assert "holds 2 skills (skills/code-review, skills/release-notes); choose one with --path" in str(
        ambiguous.exception
    )
    assert added.exit_code == 0, added.output
    assert f"from {url}, folder skills/release-notes (commit " in added.stdout
    folder = workspace / ".duragent" / "agents" / "assistant" / "skills" / "release-notes"
    assert not folder.exists()  # removed again
    assert shown.exit_code == 0, shown.output
    assert "scope:         agent:assistant" in shown.stdout
    assert "  scripts/collect.sh" in shown.stdout
    assert shown.stdout.rstrip().endswith("Use the git log.")
    assert removed.exit_code == 0, removed.output
    subjects = git(workspace / ".duragent", "log", "-2", "--format=%s%n%b").splitlines()
    assert subjects[0].startswith(
        "edit: 2 files in agents/assistant/skills/release-notes (skill release-notes removed"
    )
    addition = next(subject for subject in subjects if "added from" in subject)
    assert f"(skill release-notes added from {url}, folder skills/release-notes (commit " in addition
    assert "Duragent-Agent: assistant" in subjects
    assert git(workspace / ".duragent", "status", "--porcelain") == ""


def test_add_refuses_an_invalid_skill_with_its_location_and_writes_nothing(
    workspace: Path, tmp_path: Path
) -> None:
    source = write_skill(tmp_path, "bad-one", "name: bad-one\ndescription: [x\n")
    head = git(workspace / ".duragent", "rev-parse", "HEAD")

    result = run("skill", "add", str(source))

    assert exit_code(result) == 2
    assert "bad-one/SKILL.md:4:1:" in str(result.exception)
    assert not (workspace / ".duragent" / "skills" / "bad-one").exists()
    assert git(workspace / ".duragent", "rev-parse", "HEAD") == head


def test_add_refuses_a_skill_holding_a_secret_or_a_link_out_of_it_and_writes_nothing(
    workspace: Path, tmp_path: Path
) -> None:
    """Such a file would never be committed (the secret guard) and every later commit would say
    so; a link could point the agent at the workspace's tokens."""
    keyed = write_skill(tmp_path, "keyed")
    (keyed / "ref").mkdir()
    (keyed / "ref" / "creds.txt").write_text("aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n")
    linked = write_skill(tmp_path, "linked")
    (linked / "tokens").symlink_to("../../ws/.duragent/run/tokens.json")

    secret = run("skill", "add", str(keyed))
    link = run("skill", "add", str(linked))

    assert exit_code(secret) == 2
    assert str(secret.exception).startswith("ref/creds.txt holds a secret (AWS_ACCESS_KEY); remove it")
    assert exit_code(link) == 2
    assert "tokens links outside the skill" in str(link.exception)
    assert not (workspace / ".duragent" / "skills" / "keyed").exists()
    assert not (workspace / ".duragent" / "skills" / "linked").exists()


def test_add_refuses_a_name_already_taken_and_a_clone_that_fails(workspace: Path, tmp_path: Path) -> None:
    source = write_skill(tmp_path, "twice")
    assert run("skill", "add", str(source)).exit_code == 0

    again = run("skill", "add", str(source))
    missing = run("skill", "add", f"file://{tmp_path}/no-such-repo.git")

    assert exit_code(again) == 2
    assert "a skill named 'twice' is already in" in str(again.exception)
    assert exit_code(missing) == 2
    assert f"could not clone file://{tmp_path}/no-such-repo.git" in str(missing.exception)


def test_a_clone_that_fails_says_what_git_said_went_wrong(workspace: Path, tmp_path: Path) -> None:
    """git ends its message with advice ("...and the repository exists."); the cause comes first."""
    missing = run("skill", "add", f"file://{tmp_path}/no-such-repo.git")

    assert exit_code(missing) == 2
    assert str(missing.exception) == (
        f"could not clone file://{tmp_path}/no-such-repo.git: "
        f"'{tmp_path}/no-such-repo.git' does not appear to be a git repository"
    )


def test_add_over_a_folder_that_is_not_a_skill_says_so_instead_of_suggesting_remove(
    workspace: Path, tmp_path: Path
) -> None:
    """`skill remove` only removes skills: pointing at it for a folder without a SKILL.md is a dead end."""
    notes = workspace / ".duragent" / "skills" / "tea-timer" / "notes.md"
    notes.parent.mkdir(parents=True)
    notes.write_text("my notes\n")

    added = run("skill", "add", str(write_skill(tmp_path, "tea-timer")))

    assert exit_code(added) == 2
    assert str(added.exception) == (
        f"{notes.parent} is in the way: a folder without a SKILL.md, not a skill; "
        "move it elsewhere (or delete it) and add the skill again"
    )
    assert notes.read_text() == "my notes\n"
    assert not (notes.parent / "SKILL.md").exists()


def test_show_and_remove_an_unknown_skill_name_the_known_ones(workspace: Path, tmp_path: Path) -> None:
    run("skill", "add", str(write_skill(tmp_path, "known")))

    shown = run("skill", "show", "unknown")
    removed = run("skill", "remove", "unknown")

    assert exit_code(shown) == 1
    assert str(shown.exception) == "no skill 'unknown'; skills: known, meeting-notes"
    assert exit_code(removed) == 1
    assert "no skill 'unknown' in" in str(removed.exception)
    assert str(removed.exception).endswith("skills there: known, meeting-notes")


def test_agent_validate_reports_invalid_skills_with_file_and_line(workspace: Path) -> None:
    data = workspace / ".duragent"
    write_skill(data / "agents" / "assistant" / "skills", "no-description", "name: no-description\n")
    write_skill(data / "skills", "Wrong", "name: Wrong\ndescription: x\n")

    result = run("agent", "validate")

    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        ".duragent/skills/Wrong/SKILL.md:2:7: name: 'Wrong' must be lowercase letters, digits and single "
        "hyphens (not at the start or end)",
        ".duragent/agents/assistant/skills/no-description/SKILL.md:2:1: description is required",
    ]
    assert "1 of 2 agents invalid" in result.stderr
    assert "the workspace's skills/ or tools/ folder has invalid entries" in result.stderr


def test_agent_context_shows_the_skills_index_the_model_gets(workspace: Path, tmp_path: Path) -> None:
    write_skill(workspace / ".duragent" / "skills", "tea-timer")

    result = run("agent", "context", "assistant", "--json")

    assert result.exit_code == 0, result.output
    context = json.loads(result.stdout)
    assert "skills" in [part["name"] for part in context["parts"]]
    assert "- tea-timer: Helps with tea-timer." in context["messages"][0]["content"]


def test_agent_show_names_the_agents_skills_and_tool_folders(workspace: Path) -> None:
    tool_folder(workspace / ".duragent" / "agents" / "assistant" / "tools", "stamp")

    shown = run("agent", "show", "assistant", "--json")
    text = run("agent", "show", "assistant")

    assert shown.exit_code == 0, shown.output
    details = json.loads(shown.stdout)
    assert (details["skills"], details["tool_folders"]) == (["meeting-notes"], ["stamp"])
    assert "skills       meeting-notes\ntool folders stamp\n" in text.stdout
