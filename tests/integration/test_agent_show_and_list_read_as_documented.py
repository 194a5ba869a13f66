"""`duragent agent show` says how large a context the agent is given and where that comes from;
`agent list` keeps one row per agent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from duragent.cli import build_app


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "duragent.yaml").write_text("data_dir: .duragent\n")
    agents = tmp_path / ".duragent" / "agents"
    (agents / "small").mkdir(parents=True)
    (agents / "small" / "agent.yaml").write_text(
        "name: small\nmodel: {provider: openai, name: gpt-4o, max_output_tokens: 200}\n"
        "context:\n  max_tokens: 2000\n"
    )
    (agents / "local").mkdir()
    (agents / "local" / "agent.yaml").write_text("name: local\nmodel: {provider: ollama, name: llama3.2}\n")
    return tmp_path


def test_show_gives_the_window_its_source_and_the_budget(workspace: Path) -> None:
    shown = CliRunner().invoke(build_app(), ["agent", "show", "small"])
    as_json = CliRunner().invoke(build_app(), ["agent", "show", "small", "--json"])

    assert shown.exit_code == 0, shown.output
    assert (
        "context      2000-token window (.duragent/agents/small/agent.yaml:4:15), "
        "1600 for prompts and conversation"
    ) in shown.stdout
    assert json.loads(as_json.stdout)["context"] == {
        "window": 2000,
        "source": ".duragent/agents/small/agent.yaml:4:15",
        "budget": 1600,
    }


def test_show_warns_that_ollama_may_serve_less_than_the_models_window(workspace: Path) -> None:
    shown = CliRunner().invoke(build_app(), ["agent", "show", "local"])

    assert "Ollama may serve less: set context.max_tokens to its context length" in shown.stdout


def test_list_keeps_a_multi_line_description_on_the_agents_row(workspace: Path) -> None:
    folder = workspace / ".duragent" / "agents" / "wordy"
    folder.mkdir()
    (folder / "agent.yaml").write_text(
        "name: wordy\ndescription: |\n  Line one\n  line two\nmodel: {provider: demo, name: demo}\n"
    )

    listed = CliRunner().invoke(build_app(), ["agent", "list"])

    (row,) = [line for line in listed.stdout.splitlines() if line.startswith("wordy")]
    assert "Line one line two" in row
    assert row.endswith(".duragent/agents/wordy")
