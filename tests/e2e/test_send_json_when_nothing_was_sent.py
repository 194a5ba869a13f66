"""`duragent send --json` for a message that could not be sent at all (an unknown agent or
session): a script reading stdout got nothing, only a line on stderr. It now gets the one
object `--json` promises, `status: failed` with the error, on the fast path and the full one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.terminal import DURAGENT, client_env
from tests.e2e.test_terminal_clients import ThreadedFakeLLM, duragent, fake_model, server, workspace

__all__ = ["fake_model", "server", "workspace"]  # the fixtures


@pytest.mark.parametrize(
    ("args", "stdin", "said"),
    [
        (["--agent", "nosuch", "hi"], None, "unknown agent 'nosuch'"),
        (["--session", "s_nonexistent", "hi"], None, "session 's_nonexistent' not found"),
        # (a message on stdin goes the full command's way)
        (["--agent", "nosuch", "-"], "hi from stdin", "unknown agent 'nosuch'"),
    ],
)
def test_a_message_that_could_not_be_sent_is_one_failed_object(
    workspace: Path,
    server: dict[str, Any],
    fake_model: ThreadedFakeLLM,
    args: list[str],
    stdin: str | None,
    said: str,
) -> None:
    if stdin is None:
        done = duragent(workspace, "send", "--json", *args)
    else:
        done = subprocess.run(
            [*DURAGENT, "send", "--json", *args],
            cwd=workspace,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            env=client_env(),
            timeout=30,
        )
    assert done.returncode == 1, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "not_found"
    assert said in answer["error"]["message"]
    assert said in done.stderr
