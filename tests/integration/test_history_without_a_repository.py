"""`history`, `show`, `diff`, `revert` and `gc` in a workspace whose data directory is not a git
repository say why and what to run, and the command they name does make it one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DURAGENT = Path(sys.executable).with_name("duragent")


def duragent(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DURAGENT), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [["history"], ["show"], ["diff"], ["revert", "HEAD", "--yes"], ["gc"]])
def test_a_workspace_made_with_no_git_names_the_command_that_gives_it_a_history(
    tmp_path: Path, command: list[str]
) -> None:
    assert duragent(tmp_path, "init", "--yes", "--provider", "demo", "--no-git").returncode == 0

    result = duragent(tmp_path, *command)

    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {tmp_path / '.duragent'} is not a git repository yet (a workspace made with "
        "`init --no-git`?): `duragent init` in the workspace (adding only what is missing) or the next "
        "`duragent serve` makes it one"
    )


def test_following_the_advice_gives_the_workspace_a_history(tmp_path: Path) -> None:
    assert duragent(tmp_path, "init", "--yes", "--provider", "demo", "--no-git").returncode == 0

    assert duragent(tmp_path, "init", "--yes").returncode == 0
    result = duragent(tmp_path, "history")

    assert result.returncode == 0, result.stderr
    assert "init: workspace with agent assistant" in result.stdout


def test_git_turned_off_in_the_configuration_says_so(tmp_path: Path) -> None:
    assert duragent(tmp_path, "init", "--yes", "--provider", "demo").returncode == 0
    config = tmp_path / "duragent.yaml"
    config.write_text(config.read_text() + "git:\n  enabled: false\n")

    for command in (["show"], ["revert", "HEAD", "--yes"], ["gc"]):
        result = duragent(tmp_path, *command)

        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"error: {tmp_path / '.duragent'} keeps no history: git.enabled is false in duragent.yaml; "
            "remove that line (or set it to true) to have one"
        )


def test_a_data_directory_that_does_not_exist_is_named_as_missing(tmp_path: Path) -> None:
    assert duragent(tmp_path, "init", "--yes", "--provider", "demo").returncode == 0
    missing = tmp_path / "elsewhere"

    for command in (["history"], ["show"], ["gc"]):
        result = duragent(tmp_path, "--data-dir", str(missing), *command)

        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"error: {missing} does not exist: check --data-dir, or data_dir in duragent.yaml"
        )
        assert not missing.exists()
