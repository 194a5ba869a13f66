"""An auto-allowed bash command is checked for where its words lead as bash and the programs
it runs read them, so a person is asked before it reaches the data directory: by a value glued
to an option (`tar -C../..`), a folder a program changes to (`tar -C sub`, `cd -P sub`), braces
(`{x,{a,b}}`, `{a..z}`), `/proc/<pid>/cwd` (the tool's folder to the tool, the server's to the
server, also through a link into /proc), a `file:` URL or an `@file` argument.

Each test scripts the command with the fake model against a real server (in-process app) and
checks what a person sees: an approval asked for, or the command run unasked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import Api, ApiFactory
from tests.e2e.test_agent_cannot_escape_its_policy import allow, data_dir, send, workdir
from tests.e2e.test_background_process_changes import served

__all__ = ["served"]  # the fixture

PATTERNS = (
    "bash:cat *",
    "bash:tar *",
    "bash:cp *",
    "bash:ls *",
    "bash:curl *",
    "bash:git clone *",
    "bash:cd * && cat *",
    "bash:cd && cat *",
)


@pytest.mark.parametrize(
    "command",
    [
        "tar -C../.. -cf - run",  # the folder glued to -C: tar prints the tokens file
        "tar -cvC../.. -f - run",  # ... inside a cluster of flags
        "tar -C sub -cf - ../../../run",  # a path read from the folder tar changes to
        "cp notes.md -t../../memory/pauser",  # into another agent's memory (in its context)
        "cat /proc/self/cwd/../../run/t*",  # /proc/self is the tool to bash, the server here
        "cat /proc/*/cwd/../../run/t*",
        "ls /proc/self/cwd/../../agents",
        "cat ~/w{s..s}0/data/run/t*",  # a brace sequence
        "cat ~/{x,{ws0,y}}/data/run/t*",  # nested braces
        "cat ~/{a..z}{a..z}0/data/run/t*",  # more words than are checked: ws0 is the 591st
        "curl -s file://{data}/run/tok%65ns.json",  # a file: URL, percent-encoded
        "git clone file://{data} copy",  # every agent's sessions and memory
        "curl -d @../../memory/pauser/MEMORY.md http://127.0.0.1:9/",  # a file curl posts
        "cd -P sub/x && cat ../../../../run/t*",  # the folder cd goes to after an option
        "cd && cat ws0/data/run/t*",  # a bare cd goes home
    ],
)
async def test_a_command_reaching_the_data_directory_by_a_trick_of_the_shell_is_asked_about(
    start_api: ApiFactory,
    fake_llm: FakeLLMServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    command = command.replace("{data}", str(data_dir(tmp_path)))
    # (as after `duragent init ~/duragent-home`: the data directory is inside the home folder)
    monkeypatch.setenv("HOME", str(tmp_path))
    api = await start_api(git=False)
    allow(tmp_path, *PATTERNS)
    (workdir(tmp_path) / "sub" / "x").mkdir(parents=True)
    tokens = json.loads((data_dir(tmp_path) / "run" / "tokens.json").read_text())
    fake_llm.enqueue(tool_calls([("bash", {"command": command})]), text("done"))
    session_id = await api.new_session()

    status, reply = await send(api, session_id)

    assert status == 202, reply  # a person is asked first
    assert reply["command"] == command
    assert all(str(value) not in json.dumps(fake_llm.requests[-1].messages) for value in tokens.values())
    # (the person says no: the turn ends, and so does the server without waiting for an answer)
    decision = {"call_id": reply["call_id"], "decision": "deny"}
    status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/approve", decision)
    assert status == 200


async def test_commands_staying_in_the_work_folder_still_run_unasked(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Options, braces and /proc files that lead nowhere else are not asked about (the calls of
    one batch run side by side: none depends on another)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    api = await start_api(git=False)
    allow(tmp_path, *PATTERNS)
    work = workdir(tmp_path)
    for name in ("notes1.md", "notes2.md", "drafts/notes3.md"):
        (work / name).parent.mkdir(exist_ok=True)
        (work / name).write_text(f"{Path(name).name} text\n")
    commands = [
        "cat notes{1..2}.md",
        "cat {notes1,notes2}.md",
        "tar -cf - notes1.md",
        # a glued folder inside the work folder (one holding an `o` would read as a bundled
        # `-o`, asked about: which letters are flags is the program's to say)
        "tar -Cdrafts -cf - notes3.md",
        "cat /proc/self/status",
    ]
    fake_llm.enqueue(tool_calls([("bash", {"command": command}) for command in commands]), text("done"))
    session_id = await api.new_session()

    status, reply = await send(api, session_id)

    assert status == 200, reply  # nobody was asked
    results = [str(m["content"]) for m in fake_llm.requests[-1].messages if m["role"] == "tool"]
    assert len(results) == len(commands)
    assert "notes1.md text" in results[0]
    assert "notes2.md text" in results[0]
    assert "notes1.md text" in results[2]
    assert "notes3.md text" in results[3]
    assert "VmRSS" in results[4] or "State:" in results[4]


@pytest.mark.parametrize(
    "command", ["cat p/self/cwd/../../run/t*", "cat */self/cwd/../../run/t*", "cat c/../run/t*"]
)
async def test_a_link_into_proc_in_the_work_folder_does_not_hide_where_a_command_goes(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path, command: str
) -> None:
    """Links a cloned repository or an unpacked archive may hold: `p -> /proc`, `c -> /proc/self/cwd/..`.

    Followed by the server they lead into the server's own folders; followed by bash, into the
    data directory around the work folder.
    """
    api = await start_api(git=False)
    allow(tmp_path, *PATTERNS)
    work = workdir(tmp_path)
    (work / "p").symlink_to("/proc")
    (work / "c").symlink_to("/proc/self/cwd/..")
    fake_llm.enqueue(tool_calls([("bash", {"command": command})]), text("done"))
    session_id = await api.new_session()

    status, reply = await send(api, session_id)

    assert status == 202, reply
    assert reply["command"] == command
    decision = {"call_id": reply["call_id"], "decision": "deny"}
    status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/approve", decision)
    assert status == 200


async def test_a_background_process_is_checked_from_the_folder_it_runs_in(
    served: tuple[Api, Path], fake_llm: FakeLLMServer
) -> None:
    """`spawn` with `workdir: sub` runs in `sub`: `../../../run/t*` from there is the tokens,
    from the work folder it would be outside the data directory."""
    api, data = served
    (data / "agents" / "helper" / "policy.yaml").write_text('mode: ask\nallow: ["bash:cat *"]\n')
    (data / "work" / "helper" / "sub").mkdir(parents=True)
    command = "cat ../../../run/t*"
    spawn = {"action": "spawn", "command": command, "workdir": "sub", "wait": "5s"}
    fake_llm.enqueue(tool_calls([("background_process", spawn)]), text("done"))
    session_id = await api.new_session()

    status, reply = await send(api, session_id)

    assert status == 202, reply  # a person is asked first
    assert reply["command"] == command
    decision = {"call_id": reply["call_id"], "decision": "deny"}
    status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/approve", decision)
    assert status == 200
