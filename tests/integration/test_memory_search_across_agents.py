"""`duragent memory search` without --agent looks through every agent's memory folder: the best
matches of all of them come first, and a folder in memory/ that is no agent's (a person's backup,
"old notes") is passed over instead of failing the search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from duragent.cli import build_app
from duragent.scaffold import init_workspace


def run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


@pytest.fixture
def memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    return tmp_path / "ws" / ".duragent" / "memory"


def write_day(memory: Path, agent: str, day: str, *facts: str) -> None:
    folder = memory / agent
    folder.mkdir(parents=True, exist_ok=True)
    bullets = "".join(f"- {fact}\n" for fact in facts)
    (folder / f"{day}.md").write_text(f"# {day}\n\n## Facts Stored\n{bullets}")


def test_the_best_match_of_any_agent_comes_first(memory: Path) -> None:
    write_day(memory, "alpha", "2026-11-20", "tea at noon", "tea with milk", "more tea please")
    write_day(memory, "beta", "2026-11-01", "the user drinks green tea every morning")

    result = run("memory", "search", "green tea", "-n", "2", "--json")

    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert [(hit["agent"], hit["text"]) for hit in found] == [
        ("beta", "the user drinks green tea every morning"),
        ("alpha", "more tea please"),
    ]


def test_a_folder_that_is_no_agents_does_not_fail_the_search(memory: Path) -> None:
    write_day(memory, "assistant", "2026-11-20", "the user drinks green tea")
    (memory / "old notes").mkdir()
    (memory / "old notes" / "2026-01-01.md").write_text("- tea, long ago\n")

    result = run("memory", "search", "tea")

    assert result.exit_code == 0, result.output
    assert "assistant  [fact]  the user drinks green tea" in result.output
