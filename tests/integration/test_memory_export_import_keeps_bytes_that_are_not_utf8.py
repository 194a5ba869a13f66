"""`duragent memory export` then `duragent memory import` (a backup restored, memory moved to
another machine) works when a memory file holds bytes that are not UTF-8 (a Latin-1 `é` a person
saved): the archive the export made is imported, those bytes kept exactly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from duragent.cli import build_app
from duragent.scaffold import init_workspace

LATIN1_DAY = b"# 2026-11-25\n\n## Facts Stored\n- The user lives in Orl\xe9ans\n"


def run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


def memory_of(workspace: Path) -> Path:
    return workspace / ".duragent" / "memory" / "assistant"


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    init_workspace(tmp_path / "old")
    (memory_of(tmp_path / "old") / "2026-11-25.md").write_bytes(LATIN1_DAY)
    monkeypatch.chdir(tmp_path / "old")
    exported = run("memory", "export", "--agent", "assistant", "-o", str(tmp_path / "memory.tar.gz"))
    assert exported.exit_code == 0, exported.output
    return tmp_path / "memory.tar.gz"


def test_an_exported_latin1_file_is_imported_byte_for_byte(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_workspace(tmp_path / "new")
    monkeypatch.chdir(tmp_path / "new")

    result = run("memory", "import", str(archive))

    assert result.exit_code == 0, result.output
    assert (memory_of(tmp_path / "new") / "2026-11-25.md").read_bytes() == LATIN1_DAY
    log = subprocess.run(
        ["git", "-C", str(tmp_path / "new" / ".duragent"), "log", "-1", "--format=%s"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert log.startswith("edit: memory/assistant/2026-11-25.md")


def test_importing_into_a_latin1_file_adds_the_missing_bullets_and_keeps_its_bytes(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_workspace(tmp_path / "new")
    monkeypatch.chdir(tmp_path / "new")
    day = memory_of(tmp_path / "new") / "2026-11-25.md"
    day.write_bytes(b"# 2026-11-25\n\n## Facts Stored\n- Caf\xe9 at nine\n")

    result = run("memory", "import", str(archive))

    assert result.exit_code == 0, result.output
    assert day.read_bytes() == (
        b"# 2026-11-25\n\n## Facts Stored\n- Caf\xe9 at nine\n- The user lives in Orl\xe9ans\n"
    )
