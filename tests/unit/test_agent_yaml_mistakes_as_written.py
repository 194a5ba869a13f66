"""Mistakes in agent.yaml are reported at the entry the user wrote, and prompt files are read
whatever the case of their `.md` suffix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from duragent.agents.loader import load_agent
from duragent.errors import ConfigError


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An agents folder under the working directory, so locations read `agents/x/agent.yaml`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "agents" / "bot").mkdir(parents=True)
    return tmp_path / "agents"


def write(agents: Path, yaml_text: str) -> Path:
    folder = agents / "bot"
    (folder / "agent.yaml").write_text(textwrap.dedent(yaml_text).lstrip("\n"))
    return folder


def problems_of(folder: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_agent(folder, env={})
    return [str(problem) for problem in caught.value.problems]


def test_mistakes_in_the_list_form_of_tools_are_located_at_their_entries(agents: Path) -> None:
    folder = write(
        agents,
        """
        name: bot
        model: {provider: demo, name: demo}
        tools:
          - bash
          - {type: cli, name: today}
          - 5
          - {type: cli, name: my tool, command: date}
        """,
    )

    assert problems_of(folder) == [
        "agents/bot/agent.yaml:5:5: tools[1].command is required",
        "agents/bot/agent.yaml:6:5: tools[2] must be text, got 5",
        "agents/bot/agent.yaml:7:23: tools[3].name must be text matching ^[A-Za-z0-9_-]{1,64}$, "
        "got 'my tool'",
    ]


def test_a_prompt_file_with_an_upper_case_suffix_is_read_not_sent_as_its_name(agents: Path) -> None:
    folder = write(agents, "name: bot\nmodel: {provider: demo, name: demo}\nsoul: SOUL.MD\n")
    (folder / "SOUL.MD").write_text("I am the soul.\n")

    agent, _ = load_agent(folder, env={})

    assert agent.soul.strip() == "I am the soul."
    assert agent.prompt_files["soul"] == folder.resolve() / "SOUL.MD"


def test_a_prompt_path_naming_a_folder_says_it_is_a_folder(agents: Path) -> None:
    folder = write(agents, "name: bot\nmodel: {provider: demo, name: demo}\nsystem_prompt: ./prompts\n")
    (folder / "prompts").mkdir()

    assert problems_of(folder) == [
        "agents/bot/agent.yaml:3:16: system_prompt './prompts' is a folder (agents/bot/prompts), not a file"
    ]


def test_a_cli_tool_named_like_another_tool_is_an_error_at_its_name(agents: Path) -> None:
    """Every turn would fail on it ("tool name used twice"): `agent validate` says so first."""
    folder = write(
        agents,
        """
        name: bot
        model: {provider: demo, name: demo}
        memory: true
        tools:
          builtin: [bash]
          cli:
            - {name: bash, command: ls}
            - {name: memory, command: ls}
            - {name: today, command: date}
            - {name: today, command: date}
        """,
    )

    assert problems_of(folder) == [
        f"agents/bot/agent.yaml:{line}:14: tools.cli[{index}].name '{name}' is already the name of another "
        "of the agent's tools; give the cli tool another name"
        for line, index, name in ((7, 0, "bash"), (8, 1, "memory"), (10, 3, "today"))
    ]


def test_shorthand_keys_in_a_full_form_file_say_where_they_belong(agents: Path) -> None:
    folder = write(
        agents,
        """
        apiVersion: duragent/v1alpha1
        kind: Agent
        name: bot
        model: {provider: demo, name: demo}
        """,
    )

    problems = problems_of(folder)

    assert (
        "agents/bot/agent.yaml:3:1: name at the top level is the flat shorthand's, but this file is in "
        "the full form (it has apiVersion, kind): move name under metadata"
    ) in problems
    assert (
        "agents/bot/agent.yaml:4:1: model at the top level is the flat shorthand's, but this file is in "
        "the full form (it has apiVersion, kind): move model under spec"
    ) in problems


def test_both_spellings_of_the_output_limit_are_an_error_not_one_ignored(agents: Path) -> None:
    folder = write(
        agents, "name: bot\nmodel: {provider: demo, name: demo, max_tokens: 100, max_output_tokens: 200}\n"
    )

    assert problems_of(folder) == [
        "agents/bot/agent.yaml:2:8: model: max_tokens and max_output_tokens are the same setting: keep one"
    ]


def test_both_spellings_of_the_output_limit_are_said_with_the_other_problems_of_the_model(
    agents: Path,
) -> None:
    """The conflict was said instead of the fields' own problems, which came only once it was fixed."""
    folder = write(
        agents,
        "name: bot\n"
        "model: {provider: 5, name: demo, temperature: hot, max_tokens: 1, max_output_tokens: 2}\n",
    )

    problems = problems_of(folder)

    assert len(problems) == 3, problems
    assert problems[0] == (
        "agents/bot/agent.yaml:2:8: model: max_tokens and max_output_tokens are the same setting: keep one"
    )
    assert problems[1].startswith("agents/bot/agent.yaml:2:19: model.provider must be ")
    assert problems[2] == "agents/bot/agent.yaml:2:47: model.temperature must be a number, got 'hot'"


def test_a_misspelt_required_key_is_named_with_its_correction_beside_the_missing_one(agents: Path) -> None:
    """`provder:` makes `provider` missing: the error says which key was meant, not only what is gone."""
    folder = write(
        agents,
        """
        name: bot
        model:
          provder: demo
          name: demo
        """,
    )

    assert problems_of(folder) == [
        "agents/bot/agent.yaml:3:3: model.provider is required",
        "agents/bot/agent.yaml:3:3: unknown key 'model.provder' is ignored (did you mean 'provider'?)",
    ]


def test_a_misspelt_name_in_the_shorthand_is_named_with_its_correction(agents: Path) -> None:
    folder = write(agents, "nmae: bot\nmodel: {provider: demo, name: demo}\n")

    assert "agents/bot/agent.yaml:1:1: unknown key 'nmae' is ignored (did you mean 'name'?)" in problems_of(
        folder
    )
