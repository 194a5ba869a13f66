"""The README's first screen works as written: the run command, and the test command CI runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent


def block(name: str) -> str:
    match = re.search(rf"<!-- {name} -->\n```bash\n(.+?)\n```\n<!-- /{name} -->", README, re.S)
    assert match, f"README.md has no {name} block"
    return match.group(1)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    command = block("test-command")
    assert "pytest" in command
    assert "test-command" in (ROOT / ".ci" / "run").read_text()


def readme_env(home: Path) -> dict[str, str]:
    """A new user's shell: a fresh HOME, this environment's `duragent` first on PATH, no API keys."""
    env = {**os.environ, "HOME": str(home), "PATH": f"{BIN}:{os.environ['PATH']}", "NO_COLOR": "1"}
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "DURAGENT_CONFIG"):
        env.pop(name, None)
    return env


def run_bash(script: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-c", script],
        env=readme_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def stop_server(workspace: Path, home: Path) -> None:
    subprocess.run(
        [str(BIN / "duragent"), "serve", "stop"],
        cwd=workspace,
        env=readme_env(home),
        capture_output=True,
        timeout=60,
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_readme_run_command_gives_a_visible_answer(tmp_path: Path) -> None:
    # Never skipped: the server send starts takes a free port, whatever holds 8080.
    command = block("run-command")
    # The package is already installed in this environment; everything after `pip install .` runs as written.
    after_install = command.split("pip install . && ", 1)[1]
    try:
        done = run_bash(after_install, tmp_path)
        assert done.returncode == 0, done.stderr
        assert "demo provider" in done.stdout
        memory = next((tmp_path / "duragent-home" / ".duragent" / "memory" / "assistant").glob("20*.md"))
        assert "- that my favourite tea is genmaicha" in memory.read_text()
    finally:
        stop_server(tmp_path / "duragent-home", tmp_path)


def tour_commands() -> list[str]:
    match = re.search(r"<!-- tour -->\n```console\n(.+?)\n```\n<!-- /tour -->", README, re.S)
    assert match, "README.md has no tour block"
    return [line[2:] for line in match.group(1).splitlines() if line.startswith("$ ")]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_readme_tour_runs_as_written_and_memory_comes_back(tmp_path: Path) -> None:
    commands = tour_commands()
    assert commands[-1].startswith("duragent serve stop")
    script = "\n".join(commands)
    try:
        done = run_bash(script, tmp_path)
    finally:
        stop_server(tmp_path / "duragent-home", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "started the workspace's server" in done.stderr
    assert 'I remember: "that my favourite tea is genmaicha"' in done.stdout
    assert "## Facts Stored\n- that my favourite tea is genmaicha" in done.stdout
    assert "init: workspace with agent assistant" in done.stdout  # history
    assert "stopped (pid" in done.stdout
