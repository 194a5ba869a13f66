"""`duragent skill add URL --ref REF`: a skill installed as it was at a tag, a branch or a commit,
and the commit it came from named in the output and in the data repository's log (real git)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_cli_skill import exit_code, git, run, workspace
from tests.unit.test_skills import write_skill

__all__ = ["workspace"]  # the fixture, imported to be used here


def two_versions(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository holding one skill at its root, tagged v1, then changed on main: (repo, v1, main)."""
    repo = tmp_path / "pdf-skill"
    write_skill(repo.parent, repo.name, "name: pdf\ndescription: Fill PDF forms.\n", body="Version one.\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "tag", "v1")
    (repo / "SKILL.md").write_text("---\nname: pdf\ndescription: Fill PDF forms.\n---\nVersion two.\n")
    git(repo, "commit", "-q", "-am", "v2")
    return repo, git(repo, "rev-parse", "v1").strip(), git(repo, "rev-parse", "main").strip()


def installed_instructions(workspace: Path) -> str:
    return (workspace / ".duragent" / "skills" / "pdf" / "SKILL.md").read_text()


def test_add_with_a_tag_installs_the_skill_as_it_was_at_that_tag(workspace: Path, tmp_path: Path) -> None:
    repo, v1, _main = two_versions(tmp_path)

    added = run("skill", "add", f"file://{repo}", "--ref", "v1")

    assert added.exit_code == 0, added.output
    assert "Version one." in installed_instructions(workspace)
    assert f"at v1 (commit {v1[:10]})" in added.stdout
    log = git(workspace / ".duragent", "log", "-1", "--format=%s")
    assert f"skill pdf added from file://{repo} at v1 (commit {v1[:10]})" in log


def test_add_with_a_full_commit_or_a_branch_installs_that_version(workspace: Path, tmp_path: Path) -> None:
    repo, v1, main = two_versions(tmp_path)

    by_commit = run("skill", "add", f"file://{repo}", "--ref", v1)
    removed = run("skill", "remove", "pdf")
    by_branch = run("skill", "add", f"file://{repo}", "--ref", "main")

    assert by_commit.exit_code == 0, by_commit.output
    assert f"(commit {v1[:10]})" in by_commit.stdout
    assert removed.exit_code == 0, removed.output
    assert by_branch.exit_code == 0, by_branch.output
    assert "Version two." in installed_instructions(workspace)
    assert f"at main (commit {main[:10]})" in by_branch.stdout


def test_add_without_a_ref_names_the_commit_it_installed(workspace: Path, tmp_path: Path) -> None:
    repo, _v1, main = two_versions(tmp_path)

    added = run("skill", "add", f"file://{repo}")

    assert added.exit_code == 0, added.output
    assert "Version two." in installed_instructions(workspace)
    assert f"(commit {main[:10]})" in git(workspace / ".duragent", "log", "-1", "--format=%s")


def test_a_ref_the_repository_lacks_or_a_folder_source_is_refused_and_nothing_is_written(
    workspace: Path, tmp_path: Path
) -> None:
    repo, v1, _main = two_versions(tmp_path)
    head = git(workspace / ".duragent", "rev-parse", "HEAD")

    missing = run("skill", "add", f"file://{repo}", "--ref", "v9")
    short = run("skill", "add", f"file://{repo}", "--ref", v1[:7])
    folder = run("skill", "add", str(repo), "--ref", "v1")

    assert exit_code(missing) == 2
    assert str(missing.exception) == (
        f"could not clone file://{repo} at v9: no branch, tag or commit v9 in the repository"
    )
    assert exit_code(short) == 2
    assert "give a commit by its full 40-character id" in str(short.exception)
    assert exit_code(folder) == 2
    assert str(folder.exception) == f"--ref needs a git repository; {repo} is a folder"
    assert not (workspace / ".duragent" / "skills" / "pdf").exists()
    assert git(workspace / ".duragent", "rev-parse", "HEAD") == head


def test_an_empty_repository_is_refused_as_empty(workspace: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    git(tmp_path, "init", "-q", str(empty))

    added = run("skill", "add", f"file://{empty}")

    assert exit_code(added) == 2
    assert str(added.exception) == f"file://{empty}: the repository has no commits: nothing to install"
