"""`duragent init` through typer's runner and as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from duragent.cli import build_app

DURAGENT = Path(sys.executable).with_name("duragent")
SECRET = "sk-test-0123456789abcdefDO-NOT-WRITE"


def run_init(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_app(), ["init", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def git_log(data_dir: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(data_dir), "log", "--oneline", "--format=%s"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


def test_init_yes_creates_the_workspace_and_says_what_to_run_next(tmp_path: Path) -> None:
    code, output = run_init("--yes", "--provider", "demo", str(tmp_path / "ws"))
    assert code == 0, output
    assert (tmp_path / "ws" / "duragent.yaml").is_file()
    assert (tmp_path / "ws" / ".duragent" / "agents" / "assistant" / "agent.yaml").is_file()
    assert "created      .duragent/agents/assistant/SOUL.md" in output
    assert "Provider: demo, model demo" in output
    assert "export OPENAI_API_KEY" in output, "demo tells the user how to configure a real model"
    assert "duragent agent show assistant" in output
    assert "duragent doctor" in output
    assert git_log(tmp_path / "ws" / ".duragent") == ["init: workspace with agent assistant"]


def test_agent_provider_and_model_options_end_up_in_agent_yaml(tmp_path: Path) -> None:
    code, output = run_init(
        "-y", "--agent", "coder", "--provider", "anthropic", "--model", "claude-x", str(tmp_path)
    )
    assert code == 0, output
    text = (tmp_path / ".duragent" / "agents" / "coder" / "agent.yaml").read_text()
    assert "provider: anthropic" in text
    assert "name: claude-x" in text
    assert "api_key_env: ANTHROPIC_API_KEY" in text
    assert "Provider: anthropic, model claude-x (chosen with --provider)" in output
    assert (tmp_path / ".duragent" / "memory" / "coder" / "MEMORY.md").is_file()


def test_a_provider_chosen_without_its_key_in_the_environment_says_what_to_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Otherwise init's "Next: duragent send" fails at once on the missing key."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, output = run_init("-y", "--provider", "openai", str(tmp_path / "without"))
    assert code == 0, output
    assert "OPENAI_API_KEY is not set: export OPENAI_API_KEY=..." in output
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-set")
    code, output = run_init("-y", "--provider", "openai", str(tmp_path / "with"))
    assert code == 0, output
    assert "is not set" not in output


def test_a_workspace_made_inside_another_says_it_takes_over_that_folder(tmp_path: Path) -> None:
    assert run_init("-y", "--provider", "demo", str(tmp_path / "outer"))[0] == 0
    code, output = run_init("-y", "--provider", "demo", str(tmp_path / "outer" / "notes"))
    assert code == 0, output
    assert "Note: this workspace is inside the one of " in output
    assert "outer/duragent.yaml" in output
    assert "duragent agent create NAME" in output
    code, output = run_init("-y", "--provider", "demo", str(tmp_path / "apart"))
    assert "Note: this workspace is inside" not in output


def test_a_second_init_overwrites_nothing_and_says_so(tmp_path: Path) -> None:
    run_init("-y", "--provider", "demo", str(tmp_path))
    config = tmp_path / "duragent.yaml"
    config.write_text("data_dir: ./.duragent/\n")
    code, output = run_init("-y", "--provider", "openai", str(tmp_path))
    assert code == 0
    assert "skipped      duragent.yaml (exists, left alone)" in output
    assert "created" not in output
    assert "Nothing changed" in output
    assert config.read_text() == "data_dir: ./.duragent/\n"
    assert len(git_log(tmp_path / ".duragent")) == 1
    # the agent is left as it was: what it uses is said, not the provider detected now
    assert "Model: demo/demo, as .duragent/agents/assistant/agent.yaml says (left alone)." in output
    assert "Provider: openai" not in output


def test_a_second_init_says_the_model_of_an_agent_written_in_the_shorthand(tmp_path: Path) -> None:
    run_init("-y", "--provider", "demo", str(tmp_path))
    agent_yaml = tmp_path / ".duragent" / "agents" / "assistant" / "agent.yaml"
    agent_yaml.write_text("name: assistant\nmodel: {provider: openai, name: gpt-4o}\n")
    code, output = run_init("-y", str(tmp_path))
    assert code == 0, output
    assert "Model: openai/gpt-4o, as .duragent/agents/assistant/agent.yaml says (left alone)." in output


def test_force_keeps_bak_copies_of_what_it_rewrites(tmp_path: Path) -> None:
    run_init("-y", "--provider", "demo", str(tmp_path))
    (tmp_path / "duragent.yaml").write_text("data_dir: ./.duragent/\n")
    code, output = run_init("-y", "--force", "--provider", "demo", str(tmp_path))
    assert code == 0
    assert "overwritten  duragent.yaml (previous version saved as duragent.yaml.bak)" in output
    assert (tmp_path / "duragent.yaml.bak").read_text() == "data_dir: ./.duragent/\n"
    assert (tmp_path / ".duragent" / "agents" / "assistant" / "agent.yaml.bak").is_file()


def test_force_keeps_memory_and_commits_a_persons_edits_before_rewriting_them(tmp_path: Path) -> None:
    """Switching to a real model with `init --force` must not cost the agent its memory, nor a
    person the prompt they wrote while no server ran (a .bak copy is git-ignored)."""
    run_init("-y", "--provider", "demo", str(tmp_path))
    data = tmp_path / ".duragent"
    memory = data / "memory" / "assistant" / "MEMORY.md"
    memory.write_text(memory.read_text() + "- The user is called Ana.\n")
    soul = data / "agents" / "assistant" / "SOUL.md"
    soul.write_text("You are Bob, a pirate.\n")

    code, output = run_init("-y", "--force", "--provider", "openai", str(tmp_path))

    assert code == 0, output
    assert "The user is called Ana." in memory.read_text()
    assert "You are Bob" not in soul.read_text()
    history = subprocess.run(
        ["git", "-C", str(data), "log", "-p", "--", "agents/assistant/SOUL.md", "memory/assistant/MEMORY.md"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "+You are Bob, a pirate." in history
    assert "+- The user is called Ana." in history


def test_no_git_option_leaves_no_repository(tmp_path: Path) -> None:
    code, output = run_init("-y", "--no-git", "--provider", "demo", str(tmp_path))
    assert code == 0
    assert not (tmp_path / ".duragent" / ".git").exists()
    assert "--no-git" in output


def test_an_unknown_provider_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(DURAGENT), "init", "-y", "--provider", "gpt", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "unknown provider 'gpt'" in result.stderr
    assert not (tmp_path / "ws").exists()


@pytest.mark.slow
def test_init_as_a_subprocess_writes_key_names_never_key_values(tmp_path: Path) -> None:
    env = {**os.environ, "OPENAI_API_KEY": SECRET}
    result = subprocess.run(
        [str(DURAGENT), "init", "--yes", str(tmp_path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Provider: openai, model gpt-4o-mini (OPENAI_API_KEY is set)" in result.stdout
    agent_yaml = (tmp_path / ".duragent" / "agents" / "assistant" / "agent.yaml").read_text()
    assert "api_key_env: OPENAI_API_KEY" in agent_yaml
    grep = subprocess.run(["grep", "-r", "-l", SECRET, str(tmp_path)], capture_output=True, text=True)
    assert grep.stdout == "", "the key's value was written to " + grep.stdout
    assert SECRET not in result.stdout + result.stderr
    log = subprocess.run(
        ["git", "-C", str(tmp_path / ".duragent"), "log", "--oneline"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(log) == 1
    assert log[0].endswith(" init: workspace with agent assistant")


@pytest.mark.slow
def test_on_a_terminal_init_asks_for_name_provider_and_model(tmp_path: Path) -> None:
    import pexpect

    child = pexpect.spawn(
        str(DURAGENT),
        ["init", "--provider", "demo", str(tmp_path)],
        env={**os.environ},
        encoding="utf-8",
        timeout=20,
    )
    child.expect("Agent name")
    child.sendline("helper")
    child.expect("Model")
    child.sendline("")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    agent_yaml = tmp_path / ".duragent" / "agents" / "helper" / "agent.yaml"
    assert "name: demo" in agent_yaml.read_text()
