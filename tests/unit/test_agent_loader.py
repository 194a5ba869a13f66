"""Loading agent folders: both forms, prompt files, every error kind with its location."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from duragent.agents.catalog import AgentCatalog, AgentNotFound, InvalidAgent
from duragent.agents.loader import discover_agents, load_agent, session_settings
from duragent.config import load_config
from duragent.errors import ConfigError


@pytest.fixture
def agents(datadir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixture workspace's agents folder, as the working directory's `agents/`."""
    monkeypatch.chdir(datadir)
    return datadir / "agents"


def write_agent(agents_dir: Path, name: str, yaml_text: str, files: dict[str, str] | None = None) -> Path:
    """Create `agents_dir/name/agent.yaml` (dedented) and any extra files; return the folder."""
    folder = agents_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(textwrap.dedent(yaml_text).lstrip("\n"))
    for relative, text in (files or {}).items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    return folder


def problems_of(folder: Path) -> list[str]:
    """Every problem `load_agent` reports for `folder`, as printed (`file:line:col: message`)."""
    with pytest.raises(ConfigError) as caught:
        load_agent(folder, env={})
    return [str(problem) for problem in caught.value.problems]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch workspace that is the working directory, so locations read `agents/x/agent.yaml`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "agents").mkdir()
    return tmp_path / "agents"


def test_full_form_agent_loads_with_prompt_texts_and_front_matter_removed(agents: Path) -> None:
    agent, warnings = load_agent(agents / "assistant", env={})

    assert warnings == []
    assert agent.name == "assistant"
    assert agent.description == "Helps with everyday questions"
    assert agent.spec.model.provider == "openai"
    assert agent.spec.model.temperature == 0.5
    assert agent.soul == "You are calm and practical."
    assert agent.system_prompt == "Today is {{date}}. Answer briefly."
    assert agent.instructions == "Always answer in English."
    assert agent.prompt_files == {
        "soul": agents.resolve() / "assistant" / "SOUL.md",
        "system_prompt": agents.resolve() / "assistant" / "SYSTEM_PROMPT.md",
    }
    assert agent.spec.memory is not None
    assert agent.spec.memory.enabled
    assert agent.spec.tools.builtin == ["memory", "read_file"]
    assert [tool.name for tool in agent.spec.tools.cli] == ["today"]


def test_shorthand_agent_is_normalised_to_the_same_model_as_the_full_form(
    agents: Path, workdir: Path
) -> None:
    shorthand, _ = load_agent(agents / "code-supervisor", env={})
    full_folder = write_agent(
        workdir,
        "code-supervisor",
        """
        apiVersion: duragent/v1alpha1
        kind: Agent
        metadata:
          name: code-supervisor
          description: Completes coding tasks autonomously
        spec:
          session:
            on_disconnect: continue
            max_background_runtime: 2h
          model:
            provider: anthropic
            name: claude-sonnet-4-20250514
          tools:
            builtin: [bash, notify_user]
        """,
    )
    full, _ = load_agent(full_folder, env={})

    assert shorthand.document == full.document
    assert shorthand.spec.session.max_background_runtime == timedelta(hours=2)


def test_discover_agents_lists_only_folders_holding_agent_yaml_sorted(workdir: Path) -> None:
    for name in ("zeta", "alpha"):
        write_agent(workdir, name, f"name: {name}\nmodel: {{provider: demo, name: demo}}\n")
    (workdir / "notes").mkdir()
    (workdir / ".hidden").mkdir()
    (workdir / ".hidden" / "agent.yaml").write_text("name: hidden\n")

    assert [path.name for path in discover_agents(workdir)] == ["alpha", "zeta"]
    assert discover_agents(workdir / "missing") == []


def test_bad_provider_is_reported_at_the_provider_value(workdir: Path) -> None:
    folder = write_agent(
        workdir,
        "bot",
        """
        apiVersion: duragent/v1alpha1
        kind: Agent
        metadata:
          name: bot
        spec:
          model:
            provider: openia
            name: gpt-4o
        """,
    )

    assert problems_of(folder) == [
        "agents/bot/agent.yaml:7:15: spec.model.provider must be 'openai', 'anthropic', "
        "'openrouter', 'ollama' or 'demo', got 'openia' (did you mean 'openai'?)"
    ]


def test_missing_model_name_is_reported_at_the_model_mapping(workdir: Path) -> None:
    folder = write_agent(
        workdir,
        "bot",
        """
        apiVersion: duragent/v1alpha1
        kind: Agent
        metadata:
          name: bot
        spec:
          model:
            provider: openai
        """,
    )

    assert problems_of(folder) == ["agents/bot/agent.yaml:7:5: spec.model.name is required"]


def test_name_that_differs_from_the_folder_is_an_error_at_the_name(workdir: Path) -> None:
    folder = write_agent(
        workdir,
        "helper",
        """
        apiVersion: duragent/v1alpha1
        kind: Agent
        metadata:
          name: assistant
        spec:
          model: {provider: demo, name: demo}
        """,
    )

    (problem,) = problems_of(folder)
    assert problem.startswith("agents/helper/agent.yaml:4:9: metadata.name 'assistant' must equal")
    assert "'helper'" in problem


def test_missing_prompt_file_is_an_error_at_the_field_line(workdir: Path) -> None:
    folder = write_agent(
        workdir,
        "bot",
        """
        name: bot
        model: {provider: demo, name: demo}
        system_prompt: ./SYSTEM_PROMPT.md
        """,
    )

    (problem,) = problems_of(folder)
    assert problem.startswith(
        "agents/bot/agent.yaml:3:16: system_prompt file './SYSTEM_PROMPT.md' does not exist"
    )


def test_prompt_path_leading_outside_the_agent_folder_is_refused(workdir: Path) -> None:
    (workdir / "secret.md").write_text("not for agents")
    folder = write_agent(
        workdir,
        "bot",
        """
        name: bot
        model: {provider: demo, name: demo}
        soul: ../secret.md
        """,
    )

    (problem,) = problems_of(folder)
    assert problem.startswith(
        "agents/bot/agent.yaml:3:7: soul '../secret.md' points outside the agent folder"
    )


def test_prompt_file_in_a_subfolder_of_the_agent_is_read(workdir: Path) -> None:
    folder = write_agent(
        workdir,
        "bot",
        """
        name: bot
        model: {provider: demo, name: demo}
        instructions: prompts/rules.txt
        """,
        files={"prompts/rules.txt": "Be brief.\n"},
    )

    agent, _ = load_agent(folder, env={})
    assert agent.instructions == "Be brief."


def test_multi_line_prompt_text_is_inline_even_when_it_mentions_a_file(workdir: Path) -> None:
    folder = write_agent(
        workdir,
        "bot",
        """
        name: bot
        model: {provider: demo, name: demo}
        soul: |
          You keep notes in NOTES.md
          and you are kind.
        """,
    )

    agent, _ = load_agent(folder, env={})
    assert agent.soul == "You keep notes in NOTES.md\nand you are kind.\n"
    assert agent.prompt_files == {}


def test_unknown_builtin_tool_is_an_error_listing_the_known_tools(workdir: Path) -> None:
    folder = write_agent(
        workdir,
        "bot",
        """
        name: bot
        model: {provider: demo, name: demo}
        tools:
          builtin:
            - notify_user
            - claude_code_exec
        """,
    )

    (problem,) = problems_of(folder)
    assert problem.startswith(
        "agents/bot/agent.yaml:6:7: unknown builtin tool 'claude_code_exec' in tools.builtin[1]"
    )
    assert "known tools: bash, read_file" in problem


def test_unknown_tool_in_the_list_form_is_located_at_its_entry(workdir: Path) -> None:
    folder = write_agent(
        workdir,
        "bot",
        """
        apiVersion: duragent/v1alpha1
        kind: Agent
        metadata: {name: bot}
        spec:
          model: {provider: demo, name: demo}
          tools:
            - type: cli
              name: today
              command: date
            - type: builtin
              name: web
        """,
    )

    (problem,) = problems_of(folder)
    assert problem.startswith("agents/bot/agent.yaml:11:13: unknown builtin tool 'web' in spec.tools[1].name")


def test_malformed_yaml_reports_line_and_column(workdir: Path) -> None:
    folder = workdir / "bot"
    folder.mkdir()
    (folder / "agent.yaml").write_text("name: bot\nmodel:\n  provider: demo\n   name: demo\n")

    (problem,) = problems_of(folder)
    assert problem.startswith("agents/bot/agent.yaml:4:8: invalid YAML")


def test_every_problem_in_one_file_is_reported_at_once_in_file_order(workdir: Path) -> None:
    folder = write_agent(
        workdir,
        "bot",
        """
        name: robot
        model:
          provider: gpt
        soul: ./SOUL.md
        tools: [bash, teleport]
        """,
    )

    problems = problems_of(folder)
    assert [problem.split(": ", 1)[0] for problem in problems] == [
        "agents/bot/agent.yaml:1:7",
        "agents/bot/agent.yaml:3:3",
        "agents/bot/agent.yaml:3:13",
        "agents/bot/agent.yaml:4:7",
        "agents/bot/agent.yaml:5:15",
    ]


def test_shorthand_errors_name_and_locate_keys_as_the_user_wrote_them(workdir: Path) -> None:
    folder = write_agent(
        workdir,
        "bot",
        """
        name: bot
        description: test

        session:
          on_disconnect: stop

        model:
          provider: openai
        """,
    )

    assert problems_of(folder) == [
        "agents/bot/agent.yaml:5:18: session.on_disconnect must be 'continue' or 'pause', got 'stop'",
        "agents/bot/agent.yaml:8:3: model.name is required",
    ]


def test_shorthand_unknown_key_warning_names_the_key_as_written(workdir: Path) -> None:
    folder = write_agent(
        workdir,
        "bot",
        """
        name: bot
        model:
          provider: demo
          name: demo
          temprature: 0.2
        """,
    )

    _, warnings = load_agent(folder, env={})

    assert [str(warning) for warning in warnings] == [
        "agents/bot/agent.yaml:5:3: unknown key 'model.temprature' is ignored (did you mean 'temperature'?)"
    ]


def test_full_form_unknown_key_warning_has_a_suggestion(workdir: Path) -> None:
    folder = write_agent(
        workdir,
        "bot",
        """
        apiVersion: duragent/v1alpha1
        kind: Agent
        metadata:
          name: bot
        spec:
          model: {provider: demo, name: demo}
          system_promt: hello
        """,
    )

    _, warnings = load_agent(folder, env={})

    assert [str(warning) for warning in warnings] == [
        "agents/bot/agent.yaml:7:3: "
        "unknown key 'spec.system_promt' is ignored (did you mean 'system_prompt'?)"
    ]


def test_environment_variables_are_expanded_in_agent_yaml(workdir: Path) -> None:
    folder = write_agent(
        workdir,
        "bot",
        """
        name: bot
        model:
          provider: openai
          name: ${BOT_MODEL:-gpt-4o-mini}
          base_url: ${BOT_URL}
        """,
    )

    agent, _ = load_agent(folder, env={"BOT_URL": "http://127.0.0.1:9999/v1"})
    assert agent.spec.model.name == "gpt-4o-mini"
    assert agent.spec.model.base_url == "http://127.0.0.1:9999/v1"

    (problem,) = problems_of(folder)
    assert problem.startswith("agents/bot/agent.yaml:5:13: environment variable 'BOT_URL' is not set")


def test_folder_without_agent_yaml_is_a_config_error(workdir: Path) -> None:
    (workdir / "empty").mkdir()

    (problem,) = problems_of(workdir / "empty")
    assert problem == "agents/empty: no agent.yaml in this folder"


def test_agent_session_settings_override_the_config_and_say_where_from(workdir: Path) -> None:
    config_file = workdir.parent / "duragent.yaml"
    config_file.write_text("session:\n  on_disconnect: continue\n  output_buffer_size: 50\n")
    folder = write_agent(
        workdir,
        "bot",
        """
        name: bot
        model: {provider: demo, name: demo}
        session:
          on_disconnect: pause
        """,
    )
    agent, _ = load_agent(folder, env={})

    settings = session_settings(agent, load_config(config_file, env={}))

    assert {key: (s.value, s.source) for key, s in settings.items()} == {
        "on_disconnect": ("pause", "agents/bot/agent.yaml:4:18"),
        "max_background_runtime": (timedelta(minutes=30), "default"),
        "output_buffer_size": (50, f"{config_file}:3:23"),
    }


def test_session_settings_without_config_file_come_from_defaults(agents: Path) -> None:
    agent, _ = load_agent(agents / "code-supervisor", env={})

    settings = session_settings(agent, load_config(env={}))

    assert settings["on_disconnect"].source == "agents/code-supervisor/agent.yaml:5:18"
    assert settings["max_background_runtime"].value == timedelta(hours=2)
    assert (settings["output_buffer_size"].value, settings["output_buffer_size"].source) == (1000, "default")


def test_a_folder_no_agent_name_can_match_says_to_rename_or_hide_it(workdir: Path) -> None:
    """`mv helper helper.old` keeps a copy; "change the name" would lead to another error."""
    folder = write_agent(
        workdir,
        "helper.old",
        """
        apiVersion: duragent/v1alpha1
        kind: Agent
        metadata:
          name: helper
        spec:
          model: {provider: demo, name: demo}
        """,
    )

    (problem,) = problems_of(folder)
    assert "the folder name 'helper.old' cannot be an agent's name" in problem
    assert "rename the folder ('helper-old')" in problem
    assert "hide it ('.helper.old')" in problem


def test_catalog_lists_and_gets_agents_by_folder_name(agents: Path) -> None:
    catalog = AgentCatalog(agents, env={})

    assert catalog.names() == ["assistant", "code-supervisor"]
    assert catalog.get("code-supervisor").spec.model.provider == "anthropic"


def test_catalog_unknown_agent_error_lists_the_known_names(agents: Path) -> None:
    with pytest.raises(AgentNotFound) as caught:
        AgentCatalog(agents, env={}).get("asistant")

    assert str(caught.value) == "no agent named 'asistant' (known agents: assistant, code-supervisor)"
    assert caught.value.exit_code == 1


def test_catalog_load_all_keeps_good_agents_when_one_is_broken(agents: Path) -> None:
    write_agent(agents, "broken", "name: broken\nmodel: {provider: nope, name: x}\n")

    loaded, errors = AgentCatalog(agents, env={}).load_all()

    assert [agent.name for agent in loaded] == ["assistant", "code-supervisor"]
    assert len(errors) == 1
    assert isinstance(errors[0], InvalidAgent)
    assert errors[0].name == "broken"
    assert str(errors[0]).startswith("agents/broken/agent.yaml:2:19: model.provider must be")


def test_catalog_copy_renames_the_agent_and_keeps_comments(agents: Path) -> None:
    catalog = AgentCatalog(agents, env={})
    (agents / "code-supervisor" / "agent.yaml").write_text(
        "# my supervisor\nname: code-supervisor   # the name\nmodel:\n  provider: anthropic\n"
        "  name: 'claude-sonnet-4-20250514'\n"
    )

    actions = catalog.copy("code-supervisor", "reviewer", model="claude-opus-4 #beta")

    assert [(action.path.name, action.action) for action in actions] == [("agent.yaml", "created")]
    assert (agents / "reviewer" / "agent.yaml").read_text() == (
        "# my supervisor\nname: reviewer   # the name\nmodel:\n"
        '  provider: anthropic\n  name: "claude-opus-4 #beta"\n'
    )
    assert catalog.get("reviewer").spec.model.name == "claude-opus-4 #beta"
