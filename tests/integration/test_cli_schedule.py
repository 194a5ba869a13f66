"""`duragent schedule ...` on a real workspace: add, list, show, pause, resume, rm, and their errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from duragent.cli import build_app
from duragent.errors import NotFound, UsageError
from duragent.scaffold import init_workspace


def run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    return tmp_path / "ws"


def test_a_schedule_added_from_the_command_line_is_a_file_people_can_read(workspace: Path) -> None:
    added = run(
        "schedule", "add", "--agent", "assistant", "--cron", "0 9 * * MON-FRI", "--timezone",
        "Europe/Paris", "--task", "summarise my inbox", "--label", "inbox",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    schedule_id = added.output.split()[1].rstrip(":")
    text = (workspace / ".duragent" / "schedules" / f"{schedule_id}.yaml").read_text()
    assert "cron: 0 9 * * MON-FRI" in text
    assert "timezone: Europe/Paris" in text
    listed = run("schedule", "list", "--json")
    [row] = json.loads(listed.output)
    assert (row["id"], row["agent"], row["status"], row["task"]) == (
        schedule_id,
        "assistant",
        "active",
        "summarise my inbox",
    )
    assert row["next_run"].endswith(("07:00:00Z", "08:00:00Z"))  # 9:00 in Paris, summer or winter
    table = run("schedule", "list")
    assert "cron 0 9 * * MON-FRI (Europe/Paris)" in table.output
    assert "inbox" in table.output
    shown = run("schedule", "show", schedule_id)
    assert "task      summarise my inbox" in shown.output
    assert "delivers  to a new session at first run" in shown.output

    assert run("schedule", "pause", schedule_id).exit_code == 0
    assert "status: paused" in (workspace / ".duragent" / "schedules" / f"{schedule_id}.yaml").read_text()
    resumed = run("schedule", "resume", schedule_id)
    assert "is active" in resumed.output
    removed = run("schedule", "rm", schedule_id)
    assert removed.exit_code == 0
    assert run("schedule", "list").output.strip() == "No schedules."


def test_a_list_with_only_finished_schedules_says_where_they_are(workspace: Path) -> None:
    """A one-shot that ran is completed, not gone: "No schedules." made it look lost."""
    (workspace / ".duragent" / "schedules").mkdir(exist_ok=True)
    (workspace / ".duragent" / "schedules" / "sch_done.yaml").write_text(
        "id: sch_done\nagent: assistant\nstatus: completed\ncreated_at: '2026-12-06T06:46:57Z'\n"
        "created_by: cli\nat: '2026-12-06T06:47:58Z'\nmessage: ping\n"
    )

    listed = run("schedule", "list")

    assert listed.exit_code == 0, listed.output
    assert listed.output.strip() == "No active schedules (1 completed or cancelled: --all lists them)."
    assert "sch_done" in run("schedule", "list", "--all").output


def test_what_the_command_line_changes_in_schedules_is_committed(workspace: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(workspace / ".duragent"), *args], capture_output=True, text=True, check=True
        ).stdout

    added = run("schedule", "add", "--agent", "assistant", "--every", "1h", "--message", "stretch")
    schedule_id = added.output.split()[1].rstrip(":")
    assert git("status", "--porcelain", "schedules") == ""
    run("schedule", "pause", schedule_id)
    run("schedule", "rm", schedule_id)

    assert git("status", "--porcelain", "schedules") == ""
    subjects = git("log", "--format=%s", "--", f"schedules/{schedule_id}.yaml").splitlines()
    assert len(subjects) == 3
    # the id cut to its time part in the subject, whole in the body
    assert all(f"schedule {schedule_id[:14]}: " in subject for subject in subjects)
    assert all(len(subject) <= 72 for subject in subjects)
    bodies = git("log", "--format=%b", "--", f"schedules/{schedule_id}.yaml")
    assert bodies.count(f"- schedule {schedule_id}: ") == 3


def test_a_persons_schedule_commands_are_committed_as_theirs(workspace: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(workspace / ".duragent"), *args], capture_output=True, text=True, check=True
        ).stdout

    added = run("schedule", "add", "--agent", "assistant", "--every", "1h", "--message", "stretch")
    schedule_id = added.output.split()[1].rstrip(":")
    run("schedule", "pause", schedule_id)
    run("schedule", "resume", schedule_id)
    run("schedule", "rm", schedule_id)

    commits = git(
        "log", "--format=%an <%ae>|%(trailers:separator=%x2c )", "--", f"schedules/{schedule_id}.yaml"
    )
    assert (
        commits.splitlines()
        == ["Test Person <person@example.test>|Duragent-Kind: schedule, Duragent-By: person"] * 4
    )
    history = json.loads(run("history", "--kind", "schedule", "--json").stdout)
    assert [entry["author_kind"] for entry in history] == ["human"] * 4
    assert "Test Person" in run("history", "--kind", "schedule").stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--every", "1h", "--cron", "0 9 * * *", "--message", "x"], "exactly one of at, every or cron"),
        (["--every", "1h"], "exactly one of message or task"),
        (["--cron", "0 9 * *", "--message", "x"], "--cron: a cron expression has 5 fields"),
        (["--at", "2020-01-01T00:00:00Z", "--message", "x"], "in the past"),
        (["--every", "often", "--message", "x"], "--every"),
        (["--cron", "0 0 30 2 *", "--message", "x"], "--cron: cron expression '0 0 30 2 *' never fires"),
    ],
)
def test_bad_schedules_are_refused_with_what_is_wrong(
    workspace: Path, args: list[str], expected: str
) -> None:
    result = run("schedule", "add", "--agent", "assistant", *args)
    assert isinstance(result.exception, UsageError)
    assert expected in str(result.exception)
    assert not list((workspace / ".duragent").glob("schedules/sch_*.yaml"))


def test_an_unknown_schedule_is_named_in_the_error(workspace: Path) -> None:
    result = run("schedule", "show", "sch_NOPE")
    assert isinstance(result.exception, NotFound)
    assert "no schedule 'sch_NOPE'" in str(result.exception)


def test_a_schedule_is_named_by_a_unique_start_of_its_id_as_commit_messages_cut_it(workspace: Path) -> None:
    made = [
        run("schedule", "add", "--agent", "assistant", "--every", "1h", "--message", f"ping {n}")
        for n in (1, 2)
    ]
    first, second = (added.output.split()[1].rstrip(":") for added in made)
    start = next(n for n in range(5, len(first)) if first[:n] != second[:n])
    short = first[: start + 2]

    paused = run("schedule", "pause", short)
    assert paused.exit_code == 0, paused.output
    assert paused.output.startswith(f"{first} is paused")
    shown = run("schedule", "show", short)
    assert first in shown.output
    both = run("schedule", "rm", "sch_")
    assert isinstance(both.exception, UsageError)
    assert "is the start of 2 schedule ids" in str(both.exception)
    removed = run("schedule", "rm", short)
    assert removed.output == f"removed {first}\n"
    assert not (workspace / ".duragent" / "schedules" / f"{first}.yaml").exists()


def test_without_agent_a_schedule_is_for_the_only_agent_as_send_picks_it(workspace: Path) -> None:
    added = run("schedule", "add", "--every", "1h", "--message", "ping")
    assert added.exit_code == 0, added.output
    [row] = json.loads(run("schedule", "list", "--json").output)
    assert row["agent"] == "assistant"

    assert run("agent", "create", "second").exit_code == 0
    several = run("schedule", "add", "--every", "1h", "--message", "ping")
    assert isinstance(several.exception, UsageError)
    assert "there are several agents (assistant, second); pick one with --agent NAME" in str(
        several.exception
    )


def test_an_agent_deployed_over_the_admin_api_counts_and_a_name_no_agent_has_is_refused(
    workspace: Path,
) -> None:
    import shutil

    from duragent.config import load_config

    deployed = load_config().dynamic_agents_path / "bot"
    shutil.copytree(workspace / ".duragent" / "agents" / "assistant", deployed)
    (deployed / "agent.yaml").write_text(
        (deployed / "agent.yaml").read_text().replace("name: assistant", "name: bot")
    )

    several = run("schedule", "add", "--every", "1h", "--message", "ping")
    assert "there are several agents (assistant, bot)" in str(several.exception)
    for_bot = run("schedule", "add", "--agent", "bot", "--every", "1h", "--message", "ping")
    assert for_bot.exit_code == 0, for_bot.output
    for name in ("..", ".hidden", "nobody"):
        refused = run("schedule", "add", "--agent", name, "--every", "1h", "--message", "ping")
        assert isinstance(refused.exception, UsageError), name
        assert f"--agent: no agent {name!r} in " in str(refused.exception)


def write_process(workspace: Path, handle: str, status: str, agent: str = "assistant") -> None:
    """A background process's record, as the server leaves it in the data directory."""
    from duragent.processes.record import ProcessRecord, render_record
    from duragent.stores.base import utcnow

    record = ProcessRecord(
        handle=handle, agent=agent, session_id="s_X", command="make", status=status, started_at=utcnow()
    )  # type: ignore[arg-type]
    folder = workspace / ".duragent" / "processes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{handle}.yaml").write_text(render_record(record))


def test_listing_the_schedules_of_an_unknown_agent_says_so(workspace: Path) -> None:
    """A misspelt `--agent` is not "No schedules.", which reads as if they were all gone; the
    schedules of an agent since removed are still listed by its name."""
    mistyped = run("schedule", "list", "--agent", "asistant")
    assert isinstance(mistyped.exception, UsageError)
    assert str(mistyped.exception).startswith("--agent: no agent 'asistant' in ")
    assert run("schedule", "list", "--agent", "assistant").output.strip() == "No schedules."
    added = run("schedule", "add", "--agent", "assistant", "--every", "1h", "--message", "hi")
    assert added.exit_code == 0, added.output
    schedule_id = added.output.split()[1].rstrip(":")
    agents = workspace / ".duragent" / "agents"
    (agents / "assistant").rename(agents / "retired")
    listed = run("schedule", "list", "--agent", "assistant")
    assert listed.exit_code == 0, listed.output
    assert schedule_id in listed.output


def test_until_process_names_a_running_process_of_the_agent(workspace: Path) -> None:
    write_process(workspace, "proc_RUNNING", "running")
    write_process(workspace, "proc_DONE", "exited")
    write_process(workspace, "proc_OTHERS", "running", agent="someone-else")
    base = ("schedule", "add", "--agent", "assistant", "--every", "10m", "--task", "report on the build")
    added = run(*base, "--until-process", "proc_RUNNING")
    assert added.exit_code == 0, added.output
    schedule_id = added.output.split()[1].rstrip(":")
    text = (workspace / ".duragent" / "schedules" / f"{schedule_id}.yaml").read_text()
    assert "until_process: proc_RUNNING" in text
    assert "until     background process proc_RUNNING ends" in run("schedule", "show", schedule_id).output
    ended = run(*base, "--until-process", "proc_DONE")
    assert isinstance(ended.exception, UsageError)
    assert "process proc_DONE has already ended" in str(ended.exception)
    for handle in ("proc_OTHERS", "proc_NOPE"):
        refused = run(*base, "--until-process", handle)
        assert isinstance(refused.exception, NotFound)
        # the option at fault, and no hint meant for the agent's tool ("see action list")
        assert (
            str(refused.exception) == f"--until-process: no background process {handle!r} of agent assistant"
        )
