"""A command nobody approved cannot point the data repository's git at a configuration it wrote.

Git reads its configuration, hooks and `info/` from the folder `.git/commondir` names, not from
`.git/` itself. A script an auto-allowed command runs (`sh redirect.sh`) can write that file
without naming it on the command line; left in place, the server's next commit would read the
script's configuration (a filter every file it adds goes through) and run it, with the server's environment.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import ApiFactory
from tests.waiting import until

REDIRECT = """\
cp -r ../../.git evil
git config -f evil/config filter.agents.clean "$PWD/clean.sh"
printf '* filter=agents\\n' > evil/info/attributes
printf '%s\\n' "$PWD/evil" > ../../.git/commondir
"""


def committed(data: Path, path: str) -> bool:
    out = subprocess.run(
        ["git", "log", "--format=%H", "--", path], cwd=data, capture_output=True, text=True
    ).stdout
    return bool(out.strip())


async def test_a_commondir_written_by_an_unasked_script_is_undone_before_the_server_commits(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=True)
    data = tmp_path / "ws0" / "data"
    policy = data / "agents" / "helper" / "policy.yaml"
    policy.write_text('allow: ["bash:sh *"]\n')
    work = data / "work" / "helper"
    work.mkdir(parents=True)
    ran = tmp_path / "the-agents-program-ran"
    (work / "clean.sh").write_text(f"#!/bin/sh\ntouch {ran}\ncat\n")
    (work / "clean.sh").chmod(0o755)
    (work / "redirect.sh").write_text(REDIRECT)
    fake_llm.enqueue(tool_calls([("bash", {"command": "sh redirect.sh"})]), text("done"))
    session_id = await api.new_session()

    status, reply = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "go"})

    assert status == 200, reply  # auto-allowed: nobody was asked
    assert (work / "evil" / "config").is_file(), "the script ran"
    assert not (data / ".git" / "commondir").exists()
    result = next(m for m in fake_llm.requests[-1].messages if m["role"] == "tool")
    assert "duragent undid this batch's change to" in result["content"]
    # the session's events are committed by the data repository's own configuration
    await until(lambda: committed(data, f"sessions/{session_id}") or ran.exists(), within=20)
    assert not ran.exists(), "the server's git ran a program the agent's script configured"


async def test_no_commit_reads_a_git_configuration_a_running_command_wrote(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """The undo comes when the batch ends: the server's commits wait for it (the session's own
    events are due to be committed while the command still runs)."""
    api = await start_api(git=True)
    data = tmp_path / "ws0" / "data"
    (data / "agents" / "helper" / "policy.yaml").write_text('allow: ["bash:sh *"]\n')
    work = data / "work" / "helper"
    work.mkdir(parents=True)
    ran = tmp_path / "the-agents-program-ran"
    (work / "clean.sh").write_text(f"#!/bin/sh\ntouch {ran}\ncat\n")
    (work / "clean.sh").chmod(0o755)
    # a long command: it keeps running well past the harness's 500 ms max_commit_delay
    (work / "redirect.sh").write_text(REDIRECT + "sleep 2\n")
    fake_llm.enqueue(tool_calls([("bash", {"command": "sh redirect.sh"})]), text("done"))
    session_id = await api.new_session()

    status, reply = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "go"})

    assert status == 200, reply
    assert not (data / ".git" / "commondir").exists()
    await until(lambda: committed(data, f"sessions/{session_id}") or ran.exists(), within=20)
    assert not ran.exists(), "a commit made while the command ran used the configuration it wrote"
