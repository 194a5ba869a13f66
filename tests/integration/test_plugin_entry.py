"""`duragent-gateway-<name>` run by hand in a terminal explains itself instead of waiting on stdin."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

SLACK_HINT = """\
duragent-gateway-slack is started by `duragent serve`, which talks to it over stdin/stdout.
Add it to duragent.yaml (or run `duragent init --slack`):

  gateways:
    external:
      - name: slack
        command: duragent-gateway-slack
        config:
          bot_token: ${SLACK_BOT_TOKEN}
          app_token: ${SLACK_APP_TOKEN}
"""


def run_in_a_terminal(module: str) -> subprocess.CompletedProcess[str]:
    """`python -m module` with a pseudo-terminal as its stdin, as a person starting it by hand."""
    controller, terminal = pty.openpty()
    try:
        return subprocess.run(
            [sys.executable, "-m", module], stdin=terminal, capture_output=True, text=True, timeout=60
        )
    finally:
        os.close(controller)
        os.close(terminal)


def test_the_slack_plugin_in_a_terminal_prints_its_duragent_yaml_entry_and_exits_2() -> None:
    result = run_in_a_terminal("duragent.plugins.slack")

    assert result.returncode == 2
    assert result.stderr == SLACK_HINT
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("name", "token"), [("telegram", "TELEGRAM_BOT_TOKEN"), ("discord", "DISCORD_BOT_TOKEN")]
)
def test_each_plugin_in_a_terminal_names_its_command_and_token(name: str, token: str) -> None:
    result = run_in_a_terminal(f"duragent.plugins.{name}")

    assert result.returncode == 2
    assert f"(or run `duragent init --{name}`)" in result.stderr
    assert f"        command: duragent-gateway-{name}\n" in result.stderr
    assert result.stderr.endswith(f"          bot_token: ${{{token}}}\n")
