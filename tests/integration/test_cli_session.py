"""`duragent session ...` and `duragent history` on a real workspace with a real git repository."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from duragent.cli import build_app
from duragent.config import load_config
from duragent.scaffold import init_workspace
from duragent.sessions.log import SessionLog
from duragent.workspace import Workspace

DURAGENT = Path(sys.executable).parent / "duragent"


def run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    return tmp_path / "ws"


async def make_session(content: str = "hello there", agent: str = "assistant") -> str:
    async with Workspace(load_config()) as workspace:
        log = await SessionLog.create(workspace.stores.sessions, agent=agent)
        await log.append("user_message", {"content": content, "turn": 1})
        await log.append_many(
            [
                (
                    "assistant_message",
                    {
                        "content": "",
                        "message_id": "msg_a",
                        "tool_calls": [{"id": "c1", "name": "bash", "arguments": {"command": "ls"}}],
                    },
                ),
                ("tool_call", {"call_id": "c1", "tool": "bash", "arguments": {"command": "ls"}}),
                ("tool_result", {"call_id": "c1", "tool": "bash", "ok": True, "content": "README.md"}),
                (
                    "assistant_message",
                    {
                        "content": "There is a README.",
                        "message_id": "msg_b",
                        "usage": {"input_tokens": 10, "output_tokens": 5},
                    },
                ),
            ]
        )
        return log.session_id


def git_log(workspace: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(workspace / ".duragent"), "log", *args], capture_output=True, text=True, check=True
    ).stdout


def test_list_shows_sessions_on_disk_with_their_first_message(workspace: Path) -> None:
    session_id = asyncio.run(make_session("hello there"))
    long_id = asyncio.run(make_session("please summarise the quarterly report for the board meeting"))
    result = run("session", "list")
    assert result.exit_code == 0, result.output
    header, long_row, row = result.stdout.splitlines()
    assert header.split() == ["SESSION", "AGENT", "STATUS", "EVENTS", "LAST", "ACTIVITY", "FIRST", "MESSAGE"]
    assert row.split()[:4] == [session_id, "assistant", "active", "6"]
    assert row.endswith("  hello there")
    assert long_row.startswith(long_id)
    assert long_row.endswith("  please summarise the quarterly report…")
    rows = json.loads(run("session", "list", "--json").stdout)
    assert rows[1]["session_id"] == session_id
    assert rows[1]["events"] == 6
    assert rows[0]["first_message"] == "please summarise the quarterly report for the board meeting"
    assert json.loads(run("session", "list", "--agent", "other", "--json").stdout) == []


def test_show_counts_turns_events_and_usage(workspace: Path) -> None:
    session_id = asyncio.run(make_session())
    info = json.loads(run("session", "show", session_id, "--json").stdout)
    assert info["turns"] == 1
    assert info["event_counts"]["tool_result"] == 1
    assert info["usage"] == {"input_tokens": 10, "output_tokens": 5}


def test_log_prints_a_readable_transcript_with_tool_calls(workspace: Path) -> None:
    session_id = asyncio.run(make_session())
    lines = run("session", "log", session_id).stdout.splitlines()
    texts = [line.split("] ", 1)[1] for line in lines]
    assert texts[1] == "user: hello there"
    assert texts[3] == '  → bash({"command": "ls"})'
    assert texts[4] == "  ← bash ok: README.md"
    assert texts[5] == "assistant: There is a README."


def test_log_follow_prints_events_appended_later(workspace: Path) -> None:
    session_id = asyncio.run(make_session())
    follower = subprocess.Popen(
        [str(DURAGENT), "session", "log", session_id, "--follow"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert follower.stdout is not None
        for _ in range(6):
            follower.stdout.readline()

        async def later() -> None:
            async with Workspace(load_config()) as ws:
                log = await SessionLog.open(ws.stores.sessions, session_id)
                await log.append("user_message", {"content": "are you still there?", "turn": 2})

        asyncio.run(later())
        assert follower.stdout.readline().rstrip().endswith("user: are you still there?")
    finally:
        follower.terminate()
        follower.wait(5)


def test_export_as_jsonl_is_the_log_and_as_markdown_a_transcript(workspace: Path) -> None:
    session_id = asyncio.run(make_session())
    jsonl = run("session", "export", session_id).stdout
    assert jsonl == (workspace / ".duragent" / "sessions" / session_id / "events.jsonl").read_text()
    markdown = run("session", "export", session_id, "--format", "md").stdout
    assert markdown.startswith(f"# Session {session_id}\n")
    assert "There is a README." in markdown


def test_export_fork_and_delete_take_a_unique_start_of_the_id_like_every_session_command(
    workspace: Path,
) -> None:
    session_id = asyncio.run(make_session())
    short = session_id[:20]  # (a fork made in the same millisecond shares the first 12)
    assert run("session", "export", short).stdout.startswith('{"seq":1,')
    forked = run("session", "fork", f"{short}@2", "--json")
    assert forked.exit_code == 0, forked.output
    assert json.loads(forked.stdout)["forked_from"] == {"session": session_id, "seq": 2}
    deleted = run("session", "delete", short, "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout == f"Deleted session {session_id}.\n"


def test_delete_is_committed_so_git_still_has_the_session(workspace: Path) -> None:
    session_id = asyncio.run(make_session())
    result = run("session", "delete", session_id, "--yes")
    assert result.exit_code == 0, result.output
    assert not (workspace / ".duragent" / "sessions" / session_id).exists()
    assert "deleted" in git_log(workspace, "-1", "--format=%s")
    assert f"sessions/{session_id}/events.jsonl" in git_log(workspace, "--name-only", "--format=")
    # the person's command, committed as them; the trailers history reads are kept
    assert git_log(workspace, "-1", "--format=%an <%ae>") == "Test Person <person@example.test>\n"
    trailers = git_log(workspace, "-1", "--format=%(trailers)").splitlines()
    assert trailers[:3] == [
        "Duragent-Kind: session",
        f"Duragent-Session: {session_id}",
        "Duragent-By: person",
    ]
    (deleted, *_) = json.loads(run("history", "--session", session_id, "--json").stdout)
    assert (deleted["subject"], deleted["author_kind"]) == (f"session {session_id[:12]}: deleted", "human")


def test_a_fork_is_committed_as_the_person_who_ran_it(workspace: Path) -> None:
    session_id = asyncio.run(make_session())
    forked = run("session", "fork", f"{session_id}@2", "--json")
    assert forked.exit_code == 0, forked.output
    fork_id = json.loads(forked.stdout)["session_id"]
    assert git_log(workspace, "-1", "--format=%an <%ae>", "--", f"sessions/{fork_id}") == (
        "Test Person <person@example.test>\n"
    )
    trailers = git_log(workspace, "-1", "--format=%(trailers)", "--", f"sessions/{fork_id}").splitlines()
    assert trailers[:3] == ["Duragent-Kind: session", f"Duragent-Session: {fork_id}", "Duragent-By: person"]
    entries = json.loads(run("history", "--session", fork_id, "--json").stdout)
    assert [entry["author_kind"] for entry in entries] == ["human"]


def test_delete_without_yes_in_a_pipe_is_refused(workspace: Path) -> None:
    session_id = asyncio.run(make_session())
    completed = subprocess.run(
        [str(DURAGENT), "session", "delete", session_id],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 2
    assert "pass --yes" in completed.stderr
    assert (workspace / ".duragent" / "sessions" / session_id).exists()


def test_unknown_session_is_a_clear_error(workspace: Path) -> None:
    completed = subprocess.run([str(DURAGENT), "session", "show", "s_nope"], capture_output=True, text=True)
    assert completed.returncode == 1
    assert completed.stderr.strip() == "error: session 's_nope' not found"


def test_session_ids_that_could_escape_are_refused(workspace: Path) -> None:
    completed = subprocess.run([str(DURAGENT), "session", "show", "../x"], capture_output=True, text=True)
    assert completed.returncode == 2
    assert "invalid session id" in completed.stderr


def test_history_lists_what_the_agent_changed(workspace: Path) -> None:
    session_id = asyncio.run(make_session("a secret sk-abcdefghijklmnopqrstuvwxyz12 here"))
    entries = json.loads(run("history", "--json").stdout)
    assert entries[0]["sessions"] == [session_id]
    assert entries[0]["author_kind"] == "agent"
    assert entries[-1]["subject"] == "init: workspace with agent assistant"
    assert json.loads(run("history", "--session", "s_other", "--json").stdout) == []
    text = run("history").stdout
    # (the id cut to its time part: a subject `git log --oneline` shows whole)
    assert f"session {session_id[:12]}: " in text
    assert "sk-abcdefghijklmnopqrstuvwxyz12" not in git_log(workspace, "-p")


def test_history_takes_a_session_by_the_start_of_its_id_as_session_show_does(workspace: Path) -> None:
    session_id = asyncio.run(make_session())

    by_prefix = json.loads(run("history", "--session", session_id[:10], "--json").stdout)
    unknown = run("history", "--session", "s_ZZZZ")

    assert by_prefix
    assert all(entry["sessions"] == [session_id] for entry in by_prefix)
    assert unknown.exit_code == 0, unknown.output
    assert unknown.stdout == "No change matches these options.\n"


def test_history_takes_a_deleted_session_by_the_start_of_its_id(workspace: Path) -> None:
    session_id = asyncio.run(make_session())
    other_id = asyncio.run(make_session())
    for gone in (session_id, other_id):
        assert run("session", "delete", gone, "--yes").exit_code == 0

    by_prefix = json.loads(run("history", "--session", session_id[:-2], "--json").stdout)
    shared = run("history", "--session", "s_")

    assert len(by_prefix) == 2
    assert "deleted" in by_prefix[0]["subject"]
    assert all(entry["sessions"] == [session_id] for entry in by_prefix)
    ids = ", ".join(sorted([session_id, other_id]))
    assert f"'s_' is the start of 2 session ids ({ids})" in str(shared.exception)


def test_commands_outside_a_workspace_say_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    completed = subprocess.run([str(DURAGENT), "session", "list"], capture_output=True, text=True)
    assert completed.returncode == 2
    assert "not a Duragent workspace (or any parent): run duragent init" in completed.stderr
    assert not (tmp_path / ".duragent").exists()  # nothing is created outside a workspace


async def make_unattended_session() -> str:
    """A session whose turn went on after its last client left (`running`)."""
    async with Workspace(load_config()) as workspace:
        log = await SessionLog.create(workspace.stores.sessions, agent="assistant")
        await log.append("user_message", {"content": "run the long job", "turn": 1})
        await log.append(
            "status_change", {"from": "active", "to": "running", "reason": "client disconnected"}
        )
        await log.snapshot()
        return log.session_id


def test_show_says_how_long_a_running_session_was_unattended_and_when_it_pauses(workspace: Path) -> None:
    agent_yaml = workspace / ".duragent" / "agents" / "assistant" / "agent.yaml"
    agent_yaml.write_text(
        agent_yaml.read_text().replace("# max_background_runtime: 30m", "max_background_runtime: 2h")
    )
    session_id = asyncio.run(make_unattended_session())
    info = json.loads(run("session", "show", session_id, "--json").stdout)
    unattended = info["unattended"]
    since = datetime.fromisoformat(unattended["unattended_since"])
    assert datetime.fromisoformat(unattended["pauses_at"]) - since == timedelta(hours=2)
    assert unattended["unattended_since"].endswith("Z")  # as every other time of the API
    assert 0 <= unattended["unattended_seconds"] < 60
    text = run("session", "show", session_id).stdout
    assert re.search(r"unattended for \d+s \(since ", text)
    assert "will be paused at" in text
    assert "(max_background_runtime 2h)" in text


def test_show_of_an_attended_session_has_no_unattended_line(workspace: Path) -> None:
    session_id = asyncio.run(make_session())
    assert json.loads(run("session", "show", session_id, "--json").stdout)["unattended"] is None
    assert "unattended" not in run("session", "show", session_id).stdout
