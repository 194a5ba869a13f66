"""A gateway's token kept only in the service's environment file (docs/gateways.md, step 5) is not
set in the person's shell: the commands that never use it still work there, `doctor` reports it,
and only a server started from that shell refuses, naming the variable and the line reading it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from duragent.scaffold import ProviderChoice, init_workspace

DURAGENT = Path(sys.executable).with_name("duragent")
DEMO = ProviderChoice("demo", "demo", "no API key found")
TELEGRAM = """
gateways:
  external:
    - name: telegram
      command: duragent-gateway-telegram
      env:
        TELEGRAM_ALLOWED: "yes"
      config:
        bot_token: ${TELEGRAM_BOT_TOKEN}
"""


def duragent(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in `workspace` from a shell where no gateway token is exported."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("BOT_TOKEN") and k != "DURAGENT_CONFIG"}
    return subprocess.run(
        [str(DURAGENT), *args],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def workspace_with(tmp_path: Path, gateways: str) -> tuple[Path, int]:
    """A demo workspace with `gateways` appended; also the line of duragent.yaml holding `${`."""
    workspace = tmp_path / "ws"
    init_workspace(workspace, provider=DEMO)
    config = workspace / "duragent.yaml"
    config.write_text(config.read_text(encoding="utf-8") + gateways, encoding="utf-8")
    lines = config.read_text(encoding="utf-8").splitlines()
    return workspace, next(number for number, line in enumerate(lines, 1) if "${" in line and "#" not in line)


@pytest.mark.parametrize(
    "command",
    [["agent", "list"], ["session", "list"], ["schedule", "list"], ["gateway", "list"], ["serve", "status"]],
)
def test_commands_that_never_use_a_gateway_token_work_without_it(tmp_path: Path, command: list[str]) -> None:
    workspace, _ = workspace_with(tmp_path, TELEGRAM)

    result = duragent(workspace, *command)

    assert "TELEGRAM_BOT_TOKEN" not in result.stderr
    assert "is not set" not in result.stderr
    # `gateway list` and `serve status` look for a server: none runs here, and they say so
    said = result.stdout + result.stderr
    assert result.returncode == 0 or "no server is running" in said or "not running" in said, said


def test_serve_without_the_gateway_token_names_the_variable_and_its_line(tmp_path: Path) -> None:
    workspace, line = workspace_with(tmp_path, TELEGRAM)

    result = duragent(workspace, "serve", "--port", "0")

    assert result.returncode != 0
    assert f"duragent.yaml:{line}:" in result.stderr
    assert "environment variable 'TELEGRAM_BOT_TOKEN' is not set" in result.stderr
    assert "gateways.external[0].config.bot_token" in result.stderr


def test_send_that_would_start_a_server_without_the_token_names_the_variable(tmp_path: Path) -> None:
    workspace, line = workspace_with(tmp_path, TELEGRAM)

    result = duragent(workspace, "send", "hello")

    assert result.returncode != 0
    assert "the server could not start" in result.stderr
    assert f"duragent.yaml:{line}:" in result.stderr
    assert "environment variable 'TELEGRAM_BOT_TOKEN' is not set" in result.stderr


def test_chat_local_without_the_gateway_token_names_the_variable_instead_of_starting_the_plugin(
    tmp_path: Path,
) -> None:
    # `chat --local` runs a server in the terminal's process: with the `${...}` text as the token,
    # the plugin would be started and refused by Telegram
    workspace, line = workspace_with(tmp_path, TELEGRAM)

    result = duragent(workspace, "chat", "--local", "--new")

    assert result.returncode != 0
    assert f"duragent.yaml:{line}:" in result.stderr
    assert "environment variable 'TELEGRAM_BOT_TOKEN' is not set" in result.stderr


def test_doctor_reports_the_missing_gateway_variable_and_runs_every_other_check(tmp_path: Path) -> None:
    workspace, line = workspace_with(tmp_path, TELEGRAM)

    result = duragent(workspace, "doctor")

    assert f"duragent.yaml:{line}:" in result.stdout
    assert "TELEGRAM_BOT_TOKEN" in result.stdout
    assert "hint:" in result.stdout
    # the checks after the configuration's ran: the data directory, the agents
    assert "data dir" in result.stdout
    assert "agent assistant" in result.stdout


def test_an_empty_variable_for_a_gateway_says_it_is_empty_and_where(tmp_path: Path) -> None:
    workspace, line = workspace_with(
        tmp_path,
        TELEGRAM.replace('TELEGRAM_ALLOWED: "yes"', "TELEGRAM_BOT_TOKEN: ${HOME_BOT_TOKEN:-}").replace(
            "${TELEGRAM_BOT_TOKEN}", "from-env"
        ),
    )

    result = duragent(workspace, "agent", "list")

    assert result.returncode != 0
    assert f"duragent.yaml:{line}:" in result.stderr
    assert "must be text" not in result.stderr
    assert "HOME_BOT_TOKEN" in result.stderr
    assert "empty" in result.stderr


def test_send_from_a_shell_without_the_token_uses_the_server_that_has_it(tmp_path: Path) -> None:
    workspace, _ = workspace_with(tmp_path, TELEGRAM)
    token = {"TELEGRAM_BOT_TOKEN": "123456789:AA" + "x" * 33}
    started = subprocess.run(
        [str(DURAGENT), "send", "hello"],
        cwd=workspace,
        env={**os.environ, **token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    try:
        result = duragent(workspace, "send", "hello again")

        assert result.returncode == 0, result.stderr
        assert "demo provider" in result.stdout
        assert "restarted" not in result.stderr
        assert "differs" not in result.stderr
    finally:
        duragent(workspace, "serve", "stop")
