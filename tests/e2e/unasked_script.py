"""A server whose agent runs a script nobody was asked about: the set-up of the tests that check
such a script cannot turn the server's own git against it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import ApiFactory


@dataclass(frozen=True)
class ScriptRun:
    data: Path  #: the data repository
    work: Path  #: the agent's folder, where the script ran
    filter_ran: Path  #: exists once the filter program the script configured ran
    session_id: str
    result: str  #: what the tool call returned to the model


async def run_unasked_script(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path, script: str
) -> ScriptRun:
    """Serve with git on, let policy auto-allow `sh *`, and have the agent run `sh script.sh moved`.

    Beside the script lies `clean.sh`, a filter program that marks `filter_ran` when git runs it:
    the script can configure it into whatever git folder it leads the server's git to.
    """
    api = await start_api(git=True)
    data = tmp_path / "ws0" / "data"
    (data / "agents" / "helper" / "policy.yaml").write_text('allow: ["bash:sh *"]\n')
    work = data / "work" / "helper"
    work.mkdir(parents=True)
    filter_ran = tmp_path / "the-agents-filter-ran"
    (work / "clean.sh").write_text(f"#!/bin/sh\ntouch {filter_ran}\ncat\n")
    (work / "clean.sh").chmod(0o755)
    (work / "script.sh").write_text(script)
    fake_llm.enqueue(tool_calls([("bash", {"command": "sh script.sh moved"})]), text("done"))
    session_id = await api.new_session()
    status, reply = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "go"})
    assert status == 200, reply  # auto-allowed: nobody was asked
    result = next(m for m in fake_llm.requests[-1].messages if m["role"] == "tool")
    return ScriptRun(data, work, filter_ran, session_id, str(result["content"]))


def commits_touching(folder: Path, path: str) -> str:
    """The hashes of the commits in `folder`'s repository that touched `path`, one per line."""
    done = subprocess.run(
        ["git", "log", "--format=%H", "--", path], cwd=folder, capture_output=True, text=True
    )
    return done.stdout.strip()
