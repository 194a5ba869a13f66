"""`duragent mcp list` without a running server starts the servers itself: a secret in a server's
arguments (`${TOKEN}` expanded from the environment), or in what it wrote to stderr, is redacted
in what it prints, as the running server's admin API redacts it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.server_harness import cli, write_workspace

pytestmark = pytest.mark.timeout(120)

SECRET = "mcp-secret-4f9a2c7e1b"


def test_mcp_list_without_a_server_redacts_a_token_in_args_and_stderr(tmp_path: Path) -> None:
    config = write_workspace(tmp_path, "http://127.0.0.1:9/v1", git=False, agents={"helper": "continue"})
    with config.open("a") as file:
        file.write(
            "mcp_servers:\n"
            "  - name: leaky\n"
            "    command: sh\n"
            "    args: [-c, 'echo rejected ${LEAKY_AUTH} >&2; exit 3', --auth, '${LEAKY_AUTH}']\n"
            "    start_timeout: 10s\n"
        )

    listed = cli(config, "mcp", "list", env={"LEAKY_AUTH": SECRET}, timeout=90)
    as_json = cli(config, "mcp", "list", "--json", env={"LEAKY_AUTH": SECRET}, timeout=90)

    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("leaky "))
    assert "--auth [REDACTED:LEAKY_AUTH]): failed: " in line
    assert "its stderr said: rejected [REDACTED:LEAKY_AUTH]" in line
    assert "its stderr said: rejected [REDACTED:LEAKY_AUTH]" in listed.stderr  # the warning logged
    for result in (listed, as_json):
        assert SECRET not in result.stdout + result.stderr
