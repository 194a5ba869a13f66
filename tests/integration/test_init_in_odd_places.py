"""`duragent init` aimed at a file, through a file, or at a folder whose name needs quoting, as a
real subprocess: a clear error and nothing touched, or next steps a shell can run as printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DURAGENT = Path(sys.executable).with_name("duragent")


def run_init(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DURAGENT), "init", "--yes", "--provider", "demo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_aimed_at_a_file_says_it_is_not_a_folder_and_leaves_the_file_alone(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")

    result = run_init(tmp_path, "notes.txt")

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"error: {notes} is a file, not a folder: name a folder for the workspace (it is created if missing)"
    )
    assert notes.read_text() == "mine\n"
    assert not (tmp_path / "duragent.yaml").exists()
    assert not (tmp_path / ".duragent").exists()


def test_init_through_a_file_names_the_path_and_the_reason(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")

    result = run_init(tmp_path, "notes.txt/ws")

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        f"error: cannot create the workspace in {tmp_path / 'notes.txt' / 'ws'}: "
    )
    assert "Not a directory" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_the_printed_cd_step_works_for_a_folder_with_spaces(tmp_path: Path) -> None:
    result = run_init(tmp_path, "my agents")

    assert result.returncode == 0, result.stderr
    cd_line = next(line.strip() for line in result.stdout.splitlines() if line.strip().startswith("cd "))
    assert cd_line == "cd 'my agents'"
    shell = subprocess.run(
        ["sh", "-c", f"{cd_line} && pwd"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert shell.stdout.strip() == str(tmp_path / "my agents")


def test_the_printed_cd_step_keeps_the_home_folder_expandable_when_it_quotes(tmp_path: Path) -> None:
    home = Path(os.environ["HOME"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    result = run_init(elsewhere, str(home / "my agents"))

    assert result.returncode == 0, result.stderr
    cd_line = next(line.strip() for line in result.stdout.splitlines() if line.strip().startswith("cd "))
    assert cd_line == "cd ~/'my agents'"
    shell = subprocess.run(
        ["sh", "-c", f"{cd_line} && pwd"], cwd=elsewhere, capture_output=True, text=True, check=True
    )
    assert shell.stdout.strip() == str(home / "my agents")


def test_a_second_agent_added_by_init_is_named_in_the_send_step_it_prints(tmp_path: Path) -> None:
    assert run_init(tmp_path, "ws").returncode == 0

    result = run_init(tmp_path, "ws", "--agent", "second")

    assert result.returncode == 0, result.stderr
    steps = [line.strip() for line in result.stdout.splitlines()]
    send_step = 'duragent send --agent second "hello"          # or `duragent chat --agent second` to talk'
    assert send_step in steps
    assert 'duragent send "hello"          # or `duragent chat` to talk' not in steps


def test_init_next_to_a_config_keeping_its_data_elsewhere_writes_nothing_and_says_what_to_run(
    tmp_path: Path,
) -> None:
    config = tmp_path / "duragent.yaml"
    config.write_text("data_dir: ./data\n")

    result = run_init(tmp_path)

    assert result.returncode == 2, result.stdout
    assert result.stderr.strip() == (
        f"error: {config} keeps this workspace's data in {tmp_path / 'data'} (data_dir), where init "
        "does not write: to add an agent there, run `duragent agent create NAME`"
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["duragent.yaml"]
    assert config.read_text() == "data_dir: ./data\n"


def test_the_advice_for_a_config_keeping_its_data_elsewhere_works(tmp_path: Path) -> None:
    (tmp_path / "duragent.yaml").write_text("data_dir: ./data\n")

    created = subprocess.run(
        [str(DURAGENT), "agent", "create", "helper", "--provider", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    listed = subprocess.run(
        [str(DURAGENT), "agent", "list"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )

    assert created.returncode == 0, created.stderr
    assert "data/agents/helper" in listed.stdout
