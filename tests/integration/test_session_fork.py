"""`duragent session fork`: a new session from an earlier point of another, the original untouched."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from duragent.cli import build_app
from duragent.config import load_config
from duragent.scaffold import init_workspace
from duragent.sessions.fork import ForkFailed, parse_fork_target
from duragent.sessions.log import SessionLog
from duragent.sessions.state import SessionState, resume
from duragent.stores.base import SessionEvent
from duragent.workspace import Workspace


def run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    return tmp_path / "ws"


async def conversation(turns: int) -> str:
    async with Workspace(load_config()) as workspace:
        log = await SessionLog.create(workspace.stores.sessions, agent="assistant")
        for turn in range(1, turns + 1):
            await log.append("user_message", {"content": f"question {turn}", "turn": turn})
            await log.append("assistant_message", {"content": f"answer {turn}", "message_id": f"m{turn}"})
        return log.session_id


async def events_of(session_id: str) -> list[SessionEvent]:
    async with Workspace(load_config()) as workspace:
        return await workspace.stores.sessions.read(session_id)


def test_fork_at_a_seq_copies_history_up_to_it_and_leaves_the_original(root: Path) -> None:
    original = asyncio.run(conversation(3))  # seq 1 start, 2-7 three turns
    before = (root / ".duragent" / "sessions" / original / "events.jsonl").read_bytes()
    result = run("session", "fork", f"{original}@5", "--name", "what-if", "--json")
    assert result.exit_code == 0, result.output
    forked = json.loads(result.output)
    assert forked["forked_from"] == {"session": original, "seq": 5}
    new_id = forked["session_id"]
    assert new_id != original

    events = asyncio.run(events_of(new_id))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].type == "session_start"
    assert events[0].payload["forked_from"] == {"session": original, "seq": 5}
    assert events[0].payload["metadata"]["name"] == "what-if"
    assert [e.payload.get("content") for e in events[1:]] == [
        "question 1",
        "answer 1",
        "question 2",
        "answer 2",
    ]
    assert (root / ".duragent" / "sessions" / original / "events.jsonl").read_bytes() == before


def test_a_fork_resumes_with_the_shortened_conversation(root: Path) -> None:
    original = asyncio.run(conversation(3))
    new_id = json.loads(run("session", "fork", f"{original}@3", "--json").output)["session_id"]

    async def state() -> SessionState:
        async with Workspace(load_config()) as workspace:
            return await resume(workspace.stores.sessions, new_id)

    resumed = asyncio.run(state())
    assert [m["content"] for m in resumed.conversation] == ["question 1", "answer 1"]
    assert resumed.agent == "assistant"


async def a_turn_asking(approval: bool) -> str:
    """A session stopped in its turn's tool call, which waits for a person when `approval`."""
    async with Workspace(load_config()) as workspace:
        log = await SessionLog.create(workspace.stores.sessions, agent="assistant")
        call = {"id": "c1", "name": "bash", "arguments": {"command": "ls"}}
        await log.append("user_message", {"content": "list the files", "turn": 1})
        await log.append("status_change", {"from": "active", "to": "running"})
        await log.append("assistant_message", {"content": "", "message_id": "m1", "tool_calls": [call]})
        if approval:
            asked = {"call_id": "c1", "tool": "bash", "arguments": {"command": "ls"}, "batch_position": 1}
            await log.append("approval_required", asked)
        else:
            await log.append("tool_call", {"call_id": "c1", "tool": "bash", "arguments": {"command": "ls"}})
        return log.session_id


@pytest.mark.parametrize("approval", [False, True])
def test_a_fork_in_a_turn_is_paused_and_a_call_left_without_result_is_answered_as_never_run(
    root: Path, approval: bool
) -> None:
    """A fork at a tool call was paused saying /resume takes the turn up, and /resume found nothing
    to run: the call had no result, so the model owed nothing yet."""
    from duragent.sessions.fork import FORKED_AT_APPROVAL, FORKED_BEFORE_RESULT, FORKED_MID_TURN

    original = asyncio.run(a_turn_asking(approval))
    new_id = json.loads(run("session", "fork", original, "--json").output)["session_id"]

    events = asyncio.run(events_of(new_id))
    if approval:  # asked again when someone attaches, its batch whole: nothing answered for it
        assert [e.type for e in events[-2:]] == ["approval_required", "status_change"]
        assert events[-1].payload == {"from": "running", "to": "paused", "reason": FORKED_AT_APPROVAL}
    else:
        assert [e.type for e in events[-2:]] == ["tool_result", "status_change"]
        assert events[-2].payload["content"] == FORKED_BEFORE_RESULT
        assert events[-1].payload == {"from": "running", "to": "paused", "reason": FORKED_MID_TURN}


def test_a_fork_after_an_approval_was_decided_does_not_say_it_awaits_one(root: Path) -> None:
    from duragent.sessions.fork import FORKED_MID_TURN

    async def decided() -> str:
        async with Workspace(load_config()) as workspace:
            log = await SessionLog.create(workspace.stores.sessions, agent="assistant")
            call = {"id": "c1", "name": "bash", "arguments": {"command": "ls"}}
            await log.append("user_message", {"content": "list the files", "turn": 1})
            await log.append("status_change", {"from": "active", "to": "running"})
            await log.append("assistant_message", {"content": "", "message_id": "m1", "tool_calls": [call]})
            asked = {"call_id": "c1", "tool": "bash", "arguments": {"command": "ls"}, "batch_position": 1}
            await log.append("approval_required", asked)
            await log.append(
                "status_change", {"from": "running", "to": "paused", "reason": "awaiting approval"}
            )
            await log.append("approval_decision", {"call_id": "c1", "decision": "allow_once"})
            return log.session_id

    original = asyncio.run(decided())
    new_id = json.loads(run("session", "fork", original, "--json").output)["session_id"]

    events = asyncio.run(events_of(new_id))
    assert events[-1].type == "status_change"
    assert events[-1].payload["reason"] == FORKED_MID_TURN


def test_fork_at_a_revision_uses_the_log_as_that_commit_has_it(root: Path) -> None:
    original = asyncio.run(conversation(1))
    data = root / ".duragent"
    revision = subprocess.run(
        ["git", "-C", str(data), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    asyncio.run(more_turns(original))
    result = run("session", "fork", f"{original}@{revision[:10]}", "--json")
    assert result.exit_code == 0, result.output
    forked = json.loads(result.output)
    assert forked["forked_from"]["seq"] == 3
    events = asyncio.run(events_of(forked["session_id"]))
    assert [e.payload.get("content") for e in events[1:]] == ["question 1", "answer 1"]


async def more_turns(session_id: str) -> None:
    async with Workspace(load_config()) as workspace:
        log = await SessionLog.open(workspace.stores.sessions, session_id)
        await log.append("user_message", {"content": "question 2", "turn": 2})


def test_fork_beyond_the_end_of_the_log_says_what_exists(root: Path) -> None:
    original = asyncio.run(conversation(1))
    result = run("session", "fork", f"{original}@99")
    assert isinstance(result.exception, ForkFailed)
    assert "events 1..3" in str(result.exception)


def test_fork_targets_parse_as_seq_or_revision() -> None:
    assert parse_fork_target("s_1@12").seq == 12
    assert parse_fork_target("s_1@HEAD~2").rev == "HEAD~2"
    assert parse_fork_target("s_1@1234567").rev == "1234567"  # an all-digit abbreviated commit id
    assert parse_fork_target("s_1").seq is None


def test_a_forks_name_is_listed_and_names_it_in_show_and_log(root: Path) -> None:
    original = asyncio.run(conversation(2))
    forked = json.loads(run("session", "fork", f"{original}@3", "--name", "what-if", "--json").output)

    listing = run("session", "list").output.splitlines()
    assert listing[0].split()[:2] == ["SESSION", "NAME"]
    assert any(line.split()[:2] == [forked["session_id"], "what-if"] for line in listing)
    assert json.loads(run("session", "list", "--json").output)[0]["name"] in ("what-if", None)
    shown = run("session", "show", "what-if", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["session_id"] == forked["session_id"]
    assert "answer 1" in run("session", "log", "what-if").output

    run("session", "fork", f"{original}@3", "--name", "what-if")
    ambiguous = run("session", "show", "what-if")
    assert ambiguous.exit_code != 0
    assert "2 sessions are named 'what-if'" in str(ambiguous.exception)
