"""`duragent agent list|show|validate|create` through typer's runner and as a real process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from duragent.agents.catalog import AgentNotFound, InvalidAgent
from duragent.cli import build_app
from duragent.errors import UsageError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DURAGENT = Path(sys.executable).parent / "duragent"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example workspace as the working directory."""
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root)
    monkeypatch.chdir(root)
    return root


def run(*args: str) -> Result:
    """Run `duragent ARGS` in-process; Duragent errors stay on `result.exception`."""
    return CliRunner().invoke(build_app(), list(args))


def break_agent(workspace: Path, name: str, yaml_text: str) -> Path:
    """Add an agent folder with the given agent.yaml to the workspace."""
    folder = workspace / ".duragent" / "agents" / name
    folder.mkdir(parents=True)
    (folder / "agent.yaml").write_text(yaml_text)
    return folder


def test_list_shows_each_agent_with_description_model_and_path(workspace: Path) -> None:
    result = run("agent", "list")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION", "MODEL", "PATH"]
    assert lines[1].startswith("assistant ")
    assert "openrouter/anthropic/claude-sonnet-4" in lines[1]
    assert lines[1].endswith(".duragent/agents/assistant")
    assert lines[2].startswith("code-supervisor ")
    assert "Completes coding tasks autonomously" in lines[2]


def test_list_json_marks_a_broken_agent_invalid_without_hiding_the_others(workspace: Path) -> None:
    break_agent(workspace, "broken", "name: broken\n")

    result = run("agent", "list", "--json")

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(row["name"], row["valid"]) for row in rows] == [
        ("assistant", True),
        ("broken", False),
        ("code-supervisor", True),
    ]
    assert rows[0]["provider"] == "openrouter"
    assert rows[1]["problems"] == [".duragent/agents/broken/agent.yaml:1:1: model is required"]
    assert "cannot be loaded" in result.stderr


def test_show_json_gives_each_session_setting_with_where_it_came_from(workspace: Path) -> None:
    result = run("agent", "show", "assistant", "--json")

    assert result.exit_code == 0, result.output
    details = json.loads(result.stdout)
    assert details["session"] == {
        "on_disconnect": {"value": "pause", "source": ".duragent/agents/assistant/agent.yaml:26:20"},
        "max_background_runtime": {"value": "30m", "source": "duragent.yaml:23:27"},
        "output_buffer_size": {"value": 1000, "source": "duragent.yaml:24:23"},
    }
    soul = details["prompts"]["soul"]
    assert soul["file"] == ".duragent/agents/assistant/SOUL.md"
    assert soul["bytes"] == (workspace / ".duragent/agents/assistant/SOUL.md").stat().st_size
    assert details["definition"]["spec"]["model"]["name"] == "anthropic/claude-sonnet-4"


def test_show_text_lists_model_session_sources_and_prompt_files(workspace: Path) -> None:
    result = run("agent", "show", "code-supervisor")

    assert result.exit_code == 0, result.output
    assert (
        "model        anthropic/claude-sonnet-4-20250514  (API key from $ANTHROPIC_API_KEY)" in result.stdout
    )
    assert "max_background_runtime  2h" in result.stdout
    assert "(.duragent/agents/code-supervisor/agent.yaml:9:27)" in result.stdout
    assert "system_prompt  (inline)" in result.stdout
    assert "soul           (not set)" in result.stdout


def test_show_unknown_agent_fails_listing_the_known_agents(workspace: Path) -> None:
    result = run("agent", "show", "nobody")

    assert isinstance(result.exception, AgentNotFound)
    assert result.exception.exit_code == 1
    assert "known agents: assistant, code-supervisor" in str(result.exception)


def test_show_invalid_agent_is_a_configuration_error(workspace: Path) -> None:
    break_agent(workspace, "broken", "name: broken\nmodel: {provider: demo}\n")

    result = run("agent", "show", "broken")

    assert isinstance(result.exception, InvalidAgent)
    assert result.exception.exit_code == 2


def test_validate_accepts_the_example_workspace(workspace: Path) -> None:
    result = run("agent", "validate")

    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: 2 agents valid\n"


def test_validate_prints_every_problem_with_its_location_and_exits_2(workspace: Path) -> None:
    break_agent(workspace, "broken", "name: broken\nmodel:\n  provider: gpt\n  name: x\nsoul: ./SOUL.md\n")

    result = run("agent", "validate")

    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        ".duragent/agents/broken/agent.yaml:3:13: model.provider must be 'openai', 'anthropic', "
        "'openrouter', 'ollama' or 'demo', got 'gpt'",
        ".duragent/agents/broken/agent.yaml:5:7: soul file './SOUL.md' does not exist "
        "(looked for .duragent/agents/broken/SOUL.md)",
    ]
    assert "1 of 3 agents invalid" in result.stderr


def test_validate_takes_agent_folders_and_agent_yaml_files(workspace: Path) -> None:
    agents = workspace / ".duragent" / "agents"

    result = run(
        "agent", "validate", str(agents / "assistant"), str(agents / "code-supervisor" / "agent.yaml")
    )

    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: 2 agents valid\n"


def test_validate_takes_an_agents_name_as_show_and_context_do(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_agent(workspace, "broken", "name: broken\nmodel:\n  provider: gpt\n  name: x\n")
    monkeypatch.chdir(workspace / ".duragent")  # (a name, not a path: from any folder)

    valid = run("agent", "validate", "assistant")
    invalid = run("agent", "validate", "broken")
    unknown = run("agent", "validate", "nobody")

    assert valid.exit_code == 0, valid.output
    assert valid.stdout == "ok: 1 agent valid\n"
    assert invalid.exit_code == 2
    assert "agents/broken/agent.yaml:3:13: model.provider must be" in invalid.stdout
    assert isinstance(unknown.exception, UsageError)
    refusal = str(unknown.exception)
    assert "nobody: no such file or folder, nor an agent of this workspace (agents: " in refusal
    assert "assistant" in refusal


def test_validate_prints_warnings_but_succeeds(workspace: Path) -> None:
    folder = break_agent(workspace, "typo", "name: typo\nmodel: {provider: demo, name: demo}\nsoull: hi\n")

    result = run("agent", "validate", str(folder))

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        ".duragent/agents/typo/agent.yaml:3:1: warning: "
        "unknown key 'soull' is ignored (did you mean 'soul'?)",
        "ok: 1 agent valid",
    ]


def test_create_writes_a_valid_agent_from_the_template(workspace: Path) -> None:
    result = run("agent", "create", "helper", "--provider", "ollama", "--model", "llama3.2")

    assert result.exit_code == 0, result.output
    folder = workspace / ".duragent" / "agents" / "helper"
    assert sorted(path.name for path in folder.iterdir()) == [
        "INSTRUCTIONS.md",
        "SOUL.md",
        "SYSTEM_PROMPT.md",
        "agent.yaml",
    ]
    assert "created     .duragent/agents/helper/agent.yaml" in result.stdout
    shown = json.loads(run("agent", "show", "helper", "--json").stdout)
    assert shown["definition"]["spec"]["model"] == shown["definition"]["spec"]["model"] | {
        "provider": "ollama",
        "name": "llama3.2",
    }


def test_create_writes_the_agents_long_term_memory_as_init_does(workspace: Path) -> None:
    made = run("agent", "create", "helper", "--provider", "demo")
    copied = run("agent", "create", "concierge", "--from", "assistant")

    for name, result in (("helper", made), ("concierge", copied)):
        assert result.exit_code == 0, result.output
        long_term = workspace / ".duragent" / "memory" / name / "MEMORY.md"
        assert long_term.read_text().startswith(f"# Long-term memory of {name}\n")
        assert f"created     .duragent/memory/{name}/MEMORY.md" in result.stdout


def test_create_keeps_the_memory_a_new_agent_of_that_name_finds(workspace: Path) -> None:
    # (an agent removed and created again: what it and its person wrote is not a template's to replace)
    long_term = workspace / ".duragent" / "memory" / "helper" / "MEMORY.md"
    long_term.parent.mkdir(parents=True)
    long_term.write_text("# Memory\n\n- Ada prefers tea\n")

    result = run("agent", "create", "helper", "--provider", "demo", "--force")

    assert result.exit_code == 0, result.output
    assert long_term.read_text() == "# Memory\n\n- Ada prefers tea\n"
    assert "skipped     .duragent/memory/helper/MEMORY.md  (exists, left alone)" in result.stdout


def test_create_writes_no_memory_file_when_memory_is_in_postgresql(workspace: Path) -> None:
    config = workspace / "duragent.yaml"
    config.write_text(
        config.read_text().replace(
            "  memory:\n    backend: filesystem\n",
            "  memory:\n    backend: postgres\n    url: postgresql://nobody@127.0.0.1:1/none\n",
        )
    )

    result = run("agent", "create", "helper", "--provider", "demo")

    assert result.exit_code == 0, result.output
    assert not (workspace / ".duragent" / "memory" / "helper").exists()
    assert "MEMORY.md" not in result.stdout


def test_create_leaves_an_existing_agent_alone_without_force(workspace: Path) -> None:
    agent_yaml = workspace / ".duragent" / "agents" / "assistant" / "agent.yaml"
    before = agent_yaml.read_text()

    result = run("agent", "create", "assistant", "--provider", "demo")

    assert result.exit_code == 0, result.output
    assert "skipped     .duragent/agents/assistant/agent.yaml  (exists, left alone)" in result.stdout
    assert "already exists; nothing written" in result.stdout
    assert agent_yaml.read_text() == before


def test_create_refuses_the_name_of_the_shared_memory_folder(workspace: Path) -> None:
    made = run("agent", "create", "world", "--provider", "demo")
    copied = run("agent", "create", "world", "--from", "assistant")

    for result in (made, copied):
        assert getattr(result.exception, "exit_code", result.exit_code) == 2
        assert "'world' is the shared memory folder's" in result.output + str(result.exception)
    assert not (workspace / ".duragent" / "agents" / "world").exists()


def test_create_from_copies_the_folder_and_renames_the_agent(workspace: Path) -> None:
    result = run("agent", "create", "concierge", "--from", "assistant")

    assert result.exit_code == 0, result.output
    source = (workspace / ".duragent/agents/assistant/agent.yaml").read_text()
    copy = (workspace / ".duragent/agents/concierge/agent.yaml").read_text()
    assert copy == source.replace("  name: assistant\n", "  name: concierge\n")
    assert (workspace / ".duragent/agents/concierge/SOUL.md").is_file()
    assert run("agent", "validate").stdout == "ok: 3 agents valid\n"


def test_create_from_unknown_agent_fails_listing_known_agents(workspace: Path) -> None:
    result = run("agent", "create", "copy", "--from", "ghost")

    assert isinstance(result.exception, AgentNotFound)
    assert not (workspace / ".duragent" / "agents" / "copy").exists()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed `duragent` console script."""
    return subprocess.run(
        [str(DURAGENT), *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )


@pytest.mark.slow
def test_installed_command_exits_0_1_and_2_as_documented(workspace: Path) -> None:
    ok = cli("agent", "validate", cwd=workspace)
    assert (ok.returncode, ok.stdout) == (0, "ok: 2 agents valid\n")

    missing = cli("agent", "show", "ghost", cwd=workspace)
    assert missing.returncode == 1
    assert "no agent named 'ghost' (known agents: assistant, code-supervisor)" in missing.stderr

    break_agent(workspace, "broken", "name: other\nmodel: {provider: demo, name: demo}\n")
    invalid = cli("agent", "validate", ".duragent/agents/broken", cwd=workspace)
    assert invalid.returncode == 2
    assert invalid.stdout.startswith(".duragent/agents/broken/agent.yaml:1:7: name 'other' must equal")

    (workspace / "duragent.yaml").write_text("session:\n  on_disconnect: stop\n")
    bad_config = cli("agent", "list", cwd=workspace)
    assert bad_config.returncode == 2
    assert "duragent.yaml:2:18: session.on_disconnect must be 'continue' or 'pause', got 'stop'" in (
        bad_config.stderr
    )


def test_show_names_the_agents_mcp_servers_and_never_their_header_values(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCS_MCP_TOKEN", "t0ken-value")
    break_agent(
        workspace,
        "researcher",
        "name: researcher\nmodel: {provider: openai, name: gpt-test}\nmcp_servers:\n"
        "  - {name: time, command: uvx, args: [mcp-server-time]}\n"
        "  - {name: docs, url: 'https://x.example/mcp',\n"
        "     headers: {Authorization: 'Bearer ${DOCS_MCP_TOKEN}'}}\n",
    )

    shown = run("agent", "show", "researcher")
    dumped = run("agent", "show", "researcher", "--json")

    assert shown.exit_code == 0, shown.output
    assert "mcp servers  time (stdio), docs (http)" in shown.stdout
    assert "t0ken-value" not in dumped.stdout
    definition = json.loads(dumped.stdout)["definition"]
    assert definition["spec"]["mcp_servers"][1]["headers"] == {"Authorization": "<hidden>"}
