"""`duragent doctor` says when the workspace's running server lacks what this shell would give it:
the key variable of an agent made after it started, or another provider environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "DURAGENT_CONFIG", "MY_KEY")


def duragent(cwd: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    env.update(NO_COLOR="1", DURAGENT_CLIENT_ID="doctor-server", **extra_env)
    return subprocess.run(
        [sys.executable, "-m", "duragent", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )


def server_check(workspace: Path, **env: str) -> dict[str, Any]:
    done = duragent(workspace, "doctor", "--json", **env)
    checks = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    return dict(checks["server"])


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    """A demo workspace whose background server a `send` started, in a shell without MY_KEY."""
    root = tmp_path / "ws"
    assert duragent(tmp_path, "init", "--yes", str(root)).returncode == 0
    started = duragent(root, "send", "hello")
    assert started.returncode == 0, started.stderr
    yield root
    stopped = duragent(root, "serve", "stop")  # returns once the server's process is gone
    assert stopped.returncode == 0, stopped.stderr


def test_the_server_started_in_this_shell_is_ok(workspace: Path) -> None:
    check = server_check(workspace)
    assert check["status"] == "ok"
    assert "with this shell's provider environment" in check["message"]


def test_an_agent_made_after_the_server_started_names_a_variable_it_may_lack(workspace: Path) -> None:
    assert duragent(workspace, "agent", "create", "second", "--provider", "openai").returncode == 0
    definition = workspace / ".duragent" / "agents" / "second" / "agent.yaml"
    text = definition.read_text()
    assert "api_key_env: OPENAI_API_KEY" in text
    definition.write_text(text.replace("api_key_env: OPENAI_API_KEY", "api_key_env: MY_KEY"))

    check = server_check(workspace, MY_KEY="sk-mine")

    assert check["status"] == "warn"
    assert "started before agent second named MY_KEY" in check["message"]
    assert "duragent serve stop" in check["hint"]


def test_a_key_exported_since_the_server_started_is_named(workspace: Path) -> None:
    check = server_check(workspace, OPENAI_API_KEY="sk-new")
    assert check["status"] == "warn"
    assert "started with another provider environment (OPENAI_API_KEY)" in check["message"]
    assert "restarts it once it is idle" in check["hint"]


def test_a_shell_without_a_key_the_server_has_is_no_reason_to_restart_it(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    assert duragent(tmp_path, "init", "--yes", str(root)).returncode == 0
    started = duragent(root, "send", "hello", ANTHROPIC_API_KEY="sk-ant-kept")
    assert started.returncode == 0, started.stderr
    try:
        check = server_check(root)
    finally:
        assert duragent(root, "serve", "stop").returncode == 0

    assert check["status"] == "ok"
    assert "with provider variables this shell does not set" in check["message"]
