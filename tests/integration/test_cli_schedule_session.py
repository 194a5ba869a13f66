"""`duragent schedule add --session`: the session must be one of the agent's, as over HTTP; a
mistyped one used to be accepted and the first run delivered into a new session nobody watched."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from duragent.cli import build_app
from duragent.config import load_config
from duragent.errors import NotFound, UsageError
from duragent.scaffold import init_workspace
from duragent.sessions.log import SessionLog
from duragent.workspace import Workspace


def run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    return tmp_path / "ws"


async def make_session(agent: str) -> str:
    async with Workspace(load_config()) as workspace:
        log = await SessionLog.create(workspace.stores.sessions, agent=agent)
        return log.session_id


def add(*args: str) -> Result:
    return run("schedule", "add", "--agent", "assistant", "--every", "1h", "--message", "stretch", *args)


def schedule_files(workspace: Path) -> list[Path]:
    return list((workspace / ".duragent").glob("schedules/sch_*.yaml"))


def test_an_unknown_session_is_refused_and_nothing_is_made(workspace: Path) -> None:
    result = add("--session", "s_01NOSUCHSESSION")
    assert isinstance(result.exception, NotFound), result.output
    assert str(result.exception) == "--session: no session 's_01NOSUCHSESSION' (see `duragent session list`)"
    assert schedule_files(workspace) == []


def test_another_agents_session_is_refused(workspace: Path) -> None:
    theirs = asyncio.run(make_session("other"))
    result = add("--session", theirs)
    assert isinstance(result.exception, UsageError), result.output
    assert f"--session: session {theirs} is agent other's, not assistant's" in str(result.exception)
    assert schedule_files(workspace) == []


def test_the_agents_session_is_taken_by_the_start_of_its_id(workspace: Path) -> None:
    mine = asyncio.run(make_session("assistant"))
    result = add("--session", mine[:10])
    assert result.exit_code == 0, result.output
    [path] = schedule_files(workspace)
    assert f"session_id: {mine}" in path.read_text()


def test_without_agent_the_sessions_agent_runs_it(workspace: Path) -> None:
    assert run("agent", "create", "other").exit_code == 0
    theirs = asyncio.run(make_session("other"))
    result = run("schedule", "add", "--every", "1h", "--message", "stretch", "--session", theirs)
    assert result.exit_code == 0, result.output
    [path] = schedule_files(workspace)
    assert "agent: other" in path.read_text()
    assert f"session_id: {theirs}" in path.read_text()


def test_a_schedule_file_naming_no_valid_session_id_is_listed_as_a_problem_not_a_failure(
    workspace: Path,
) -> None:
    # a hand edit; looking the session up to check its agent must not take every schedule down
    folder = workspace / ".duragent" / "schedules"
    folder.mkdir(exist_ok=True)
    (folder / "sch_BADNAME.yaml").write_text(
        "id: sch_BADNAME\nagent: assistant\ncreated_at: '2026-12-06T06:46:57Z'\nevery: 1h\n"
        "message: stretch\ndestination:\n  session_id: weekly.review\n"
    )

    listed = run("schedule", "list")

    assert listed.exit_code == 0, listed.output
    assert f"warning: {folder / 'sch_BADNAME.yaml'}:7:15: destination.session_id: " in listed.stderr
    assert "weekly.review" in listed.stderr
    assert "sch_BADNAME" in listed.stdout


def test_a_schedule_file_pointing_at_another_agents_session_is_listed_with_the_fix(workspace: Path) -> None:
    """Refused at run time (the run pauses the schedule): `schedule list` said nothing of it before."""
    theirs = asyncio.run(make_session("other"))
    folder = workspace / ".duragent" / "schedules"
    folder.mkdir(exist_ok=True)
    (folder / "sch_ELSEWHERE.yaml").write_text(
        "id: sch_ELSEWHERE\nagent: assistant\ncreated_at: '2026-12-06T06:46:57Z'\nevery: 1h\n"
        f"message: stretch\ndestination:\n  session_id: {theirs}\n"
    )

    listed = run("schedule", "list")

    assert listed.exit_code == 0, listed.output
    assert (
        f"warning: {folder / 'sch_ELSEWHERE.yaml'}:7:15: destination.session_id: session {theirs} is"
        " agent other's, not assistant's: the schedule will be paused at its first run"
    ) in listed.stderr
    assert "remove `session_id`" in listed.stderr
    assert "sch_ELSEWHERE" in listed.stdout  # still listed: it is a schedule, only misdirected
