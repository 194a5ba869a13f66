"""The process manager with real subprocesses (and real tmux): output, limits, stdin, restarts, reports."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from duragent.errors import UsageError
from duragent.processes.manager import ProcessManager, ProcessSettings, SpawnRequest
from duragent.processes.output import rotated_path
from duragent.processes.record import ProcessRecord, read_record, render_record
from duragent.processes.tmux import Tmux, socket_name, tmux_available
from duragent.stores.base import utcnow
from tests.waiting import until

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


class Reports:
    """A reporter that records every `[process finished]` it is asked to deliver."""

    def __init__(self) -> None:
        self.seen: list[tuple[ProcessRecord, str]] = []

    async def __call__(self, record: ProcessRecord, tail: str) -> None:
        self.seen.append((record, tail))


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work" / "helper"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
async def managers(tmp_path: Path) -> AsyncIterator[Callable[..., ProcessManager]]:
    """Each call is a server start: a new manager over `<tmp>/processes` with its own reporter."""
    made: list[ProcessManager] = []
    socket = socket_name(tmp_path)

    def make(**settings: object) -> ProcessManager:
        manager = ProcessManager(
            tmp_path / "processes",
            settings=ProcessSettings(**settings),  # type: ignore[arg-type]
            tmux_socket=socket,
        )
        manager.reporter = Reports()
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.close()
    if tmux_available():
        await Tmux(socket).kill_server()


def request(work: Path, command: str, **fields: object) -> SpawnRequest:
    return SpawnRequest(
        agent="helper", session_id="s_OWNER", command=command, work_root=work, env=ENV, **fields
    )  # type: ignore[arg-type]


def reports(manager: ProcessManager) -> list[tuple[ProcessRecord, str]]:
    assert isinstance(manager.reporter, Reports)
    return manager.reporter.seen


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_process_that_ends_is_recorded_and_reported_with_its_output_tail(
    managers: Callable[..., ProcessManager], work: Path, tmp_path: Path
) -> None:
    manager = managers()
    await manager.start()
    record = await manager.spawn(request(work, "echo building; echo oops >&2; pwd; exit 3", label="build"))
    await until(lambda: reports(manager))
    ended, tail = reports(manager)[0]
    assert (ended.handle, ended.status, ended.exit_code, ended.label) == (record.handle, "exited", 3, "build")
    assert "building\noops\n" in tail
    assert str(work) in tail  # it ran in the agent's work folder
    stored = read_record(tmp_path / "processes" / f"{record.handle}.yaml")
    await until(lambda: read_record(tmp_path / "processes" / f"{record.handle}.yaml").reported)
    assert stored.ended_at is not None
    assert stored.output_bytes == len(tail.encode())
    ignored = (tmp_path / "processes" / ".gitignore").read_text()
    assert "*.log" in ignored


async def test_a_timeout_stops_the_whole_group_with_sigterm_then_sigkill(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers(kill_grace=0.5)
    await manager.start()
    # The shell ignores SIGTERM and has a child: both must be gone after the grace period.
    script = "trap '' TERM; sleep 300 & echo child $!; while true; do sleep 0.1; done"
    record = await manager.spawn(request(work, script, timeout_seconds=0.5))
    await until(lambda: "child" in manager.log_path(record.handle).read_text())
    child = int(manager.log_path(record.handle).read_text().split()[1])
    await until(lambda: reports(manager))
    ended, _ = reports(manager)[0]
    assert ended.status == "timed_out"
    assert "timed out after 0.5 s" in ended.outcome()
    await until(lambda: not alive(child), within=3)


async def test_kill_stops_a_running_process_and_says_so(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers()
    await manager.start()
    record = await manager.spawn(request(work, "sleep 60"))
    killed = await manager.kill(record.handle, "helper", "killed by the agent")
    assert killed.status == "killed"
    assert killed.outcome().startswith("killed")
    with pytest.raises(UsageError, match="not running"):
        await manager.kill(record.handle, "helper")


async def test_another_agent_cannot_see_or_stop_a_process(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers()
    await manager.start()
    record = await manager.spawn(request(work, "sleep 60"))
    assert manager.list("someone-else") == []
    with pytest.raises(Exception, match="no background process"):
        await manager.kill(record.handle, "someone-else")


async def test_stdin_reaches_the_process(managers: Callable[..., ProcessManager], work: Path) -> None:
    manager = managers()
    await manager.start()
    record = await manager.spawn(request(work, "read line; echo got $line"))
    await manager.write(record.handle, "helper", "hello\n")
    await until(lambda: reports(manager))
    assert "got hello" in reports(manager)[0][1]


async def test_the_log_is_capped_and_rotated_and_reading_says_what_was_dropped(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers(log_cap_bytes=4096)
    await manager.start()
    record = await manager.spawn(request(work, "for i in $(seq 1 3000); do echo line $i; done"))
    await until(lambda: reports(manager))
    log = manager.log_path(record.handle)
    assert log.stat().st_size <= 4096
    assert rotated_path(log).stat().st_size <= 4096
    ended = manager.get(record.handle)
    assert ended.output_bytes == sum(len(f"line {i}\n") for i in range(1, 3001))
    start = await manager.read_log(record.handle, "helper", 0, 100)
    assert start.dropped > 0
    assert start.offset == start.dropped  # the oldest output still kept
    end = await manager.read_log(record.handle, "helper", None, 20)
    assert end.text.endswith("line 3000\n")
    assert end.end == ended.output_bytes


async def test_workdir_must_stay_inside_the_work_folder(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers()
    await manager.start()
    (work / "sub").mkdir()
    record = await manager.spawn(request(work, "pwd", workdir="sub"))
    assert record.workdir == "sub"
    with pytest.raises(UsageError, match="outside the agent's work folder"):
        await manager.spawn(request(work, "pwd", workdir="../.."))


async def test_a_plain_process_running_at_a_stop_is_reported_lost_at_the_next_start(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    first = managers()
    await first.start()
    record = await first.spawn(request(work, "sleep 60"))
    await first.close()
    assert record.pid is not None
    assert not alive(record.pid)  # stopped with the server: nothing could follow it
    second = managers()
    await second.start()
    await until(lambda: reports(second))
    ended, _ = reports(second)[0]
    assert (ended.handle, ended.status) == (record.handle, "lost")
    assert "server stopped" in ended.outcome()


def left_running(data: Path, handle: str, command: str, pid: int, pid_started: int | None) -> None:
    """The record a crashed server leaves in `data`: process `handle` running as `pid`."""
    record = ProcessRecord(
        handle=handle,
        agent="helper",
        session_id="s_OWNER",
        command=command,
        pid=pid,
        pid_started=pid_started,
        started_at=utcnow(),
    )
    (data / "processes").mkdir(exist_ok=True)
    (data / "processes" / f"{handle}.yaml").write_text(render_record(record))


async def test_a_plain_process_left_by_a_crash_is_killed_and_reported_lost(
    managers: Callable[..., ProcessManager], work: Path, tmp_path: Path
) -> None:
    # What a crashed server leaves: a record that says running, and the process still going.
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)  # noqa: ASYNC220
    from duragent.processes.manager import _start_ticks

    left_running(tmp_path, "proc_CRASHED1", "sleep 60", orphan.pid, _start_ticks(orphan.pid))
    manager = managers()
    await manager.start()
    await until(lambda: reports(manager))
    ended, _ = reports(manager)[0]
    assert ended.status == "lost"
    assert "restarted" in ended.outcome()
    assert orphan.wait(timeout=5) != 0  # killed, not left running


async def test_what_a_crashed_process_started_is_killed_at_the_next_start_though_its_shell_died(
    managers: Callable[..., ProcessManager], tmp_path: Path
) -> None:
    # What a `kill -9` of the server leaves: the `bash -c` died with it (PDEATHSIG), the commands
    # it started run on in its process group, orphaned; the record still says running.
    from duragent.processes.manager import PROCESS_MARKER, _group_members, _start_ticks

    # as the manager starts it: its own session, its handle in its environment
    marked = {**os.environ, PROCESS_MARKER: "proc_CRASHED2"}
    shell = subprocess.Popen(  # noqa: ASYNC220
        ["bash", "-c", "sleep 60 & sleep 61; true"], start_new_session=True, env=marked
    )
    started = _start_ticks(shell.pid)
    await until(lambda: len(list(_group_members(shell.pid))) == 3)
    shell.kill()
    shell.wait()  # (reaped: its pid is gone, the group is not)
    assert len(list(_group_members(shell.pid))) == 2
    left_running(tmp_path, "proc_CRASHED2", "sleep 60 & sleep 61; true", shell.pid, started)
    manager = managers()
    await manager.start()
    await until(lambda: reports(manager))
    assert reports(manager)[0][0].status == "lost"
    await until(lambda: not list(_group_members(shell.pid)))  # (zombies aside: init reaps them)


async def test_a_group_that_took_a_lost_process_s_number_is_left_alone(
    managers: Callable[..., ProcessManager], tmp_path: Path
) -> None:
    """Once a lost process's leftovers ended, its number is free: another program's group may
    bear it by the next start. Only what carries the lost process's handle is stopped."""
    from duragent.processes.manager import _group_members, _start_ticks

    stranger = subprocess.Popen(  # noqa: ASYNC220
        ["bash", "-c", "sleep 60 & sleep 61; true"], start_new_session=True
    )
    await until(lambda: len(list(_group_members(stranger.pid))) == 3)
    stranger_started = _start_ticks(stranger.pid)
    assert stranger_started is not None
    # the number a process of ours had, long ago
    left_running(tmp_path, "proc_LONGGONE", "make", stranger.pid, stranger_started - 1)
    try:
        manager = managers()
        await manager.start()
        await until(lambda: reports(manager))
        assert reports(manager)[0][0].status == "lost"
        assert len(list(_group_members(stranger.pid))) == 3  # untouched
    finally:
        os.killpg(stranger.pid, signal.SIGKILL)
        stranger.wait()


async def test_records_loaded_before_the_start_say_which_task_started_a_process_and_wait_for_it(
    managers: Callable[..., ProcessManager], tmp_path: Path
) -> None:
    # The server loads the records before its recovery (a resumed turn that a process's end
    # started is that process's task's turn) and starts the manager, which reports, after it.
    ended = ProcessRecord(
        handle="proc_BYTASK1",
        agent="helper",
        session_id="s_OWNER",
        command="make",
        status="exited",
        exit_code=0,
        started_at=utcnow(),
        ended_at=utcnow(),
        scheduled_by="sch_NIGHTLY",
    )
    (tmp_path / "processes").mkdir()
    (tmp_path / "processes" / "proc_BYTASK1.yaml").write_text(render_record(ended))
    manager = managers()
    await manager.load()
    assert manager.scheduled_by("proc_BYTASK1", "helper", "s_OWNER") == "sch_NIGHTLY"
    assert reports(manager) == []
    await manager.start()
    await until(lambda: reports(manager))
    assert [record.handle for record, _ in reports(manager)] == ["proc_BYTASK1"]


async def test_a_process_spawned_before_the_start_keeps_running_through_it(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    # The server makes the manager before its recovery and starts it after: a turn recovery
    # resumed may spawn meanwhile, and the start must not take that process for one a crash left.
    manager = managers()
    record = await manager.spawn(request(work, "sleep 60"))
    await manager.start()
    assert record.pid is not None
    assert alive(record.pid)
    assert manager.get(record.handle).status == "running"
    assert reports(manager) == []


async def test_an_unreported_end_is_reported_at_the_next_start(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    first = managers()
    await first.start()

    async def session_unreachable(record: ProcessRecord, tail: str) -> None:
        raise ConnectionError("the session store is down")

    first.reporter = session_unreachable
    record = await first.spawn(request(work, "echo finished"))
    await until(lambda: first.get(record.handle).ended)
    await first.close()
    second = managers()
    await second.start()
    await until(lambda: reports(second))
    assert reports(second)[0][0].handle == record.handle
    assert "finished" in reports(second)[0][1]


async def test_an_end_seen_by_wait_is_not_reported_again(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers()
    await manager.start()
    record = await manager.spawn(request(work, "echo quick"))
    ended = await manager.wait(record.handle, 10)
    assert ended.status == "exited"
    await asyncio.sleep(0.2)  # a report would have been queued at the end
    assert reports(manager) == []
    # reported once the call's result that tells the session is stored (a crash before: at next start)
    assert not manager.get(record.handle).reported
    await manager.answered(record.handle)
    assert manager.get(record.handle).reported


@pytest.mark.skipif(not tmux_available(), reason="tmux is not installed")
async def test_an_interactive_process_is_typed_into_and_survives_a_restart(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    first = managers()
    await first.start()
    script = "echo ready; read answer; echo you said $answer; exit 7"
    record = await first.spawn(request(work, script, interactive=True))
    await until(lambda: "ready" in first.log_path(record.handle).read_text())
    screen = await first.capture(record.handle, "helper", 50)
    assert "ready" in screen
    await first.close()  # the server stops; tmux keeps the process
    second = managers()
    await second.start()
    assert second.get(record.handle).status == "running"
    await second.send_keys(record.handle, "helper", "forty-two", enter=True)
    await until(lambda: reports(second))
    ended, tail = reports(second)[0]
    assert (ended.status, ended.exit_code) == ("exited", 7)
    assert "you said forty-two" in tail


async def test_a_report_that_fails_is_tried_again_until_it_reaches_the_session(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers(report_retry=0.05)
    await manager.start()
    delivered: list[str] = []
    failures = [ConnectionError("the session store is down")] * 2

    async def flaky(record: ProcessRecord, tail: str) -> None:
        if failures:
            raise failures.pop()
        delivered.append(tail)

    manager.reporter = flaky
    record = await manager.spawn(request(work, "echo at last"))
    await until(lambda: manager.get(record.handle).reported)
    assert delivered == ["at last\n"]
    assert failures == []


async def test_only_the_newest_ended_processes_are_kept_across_starts(
    managers: Callable[..., ProcessManager], work: Path, tmp_path: Path
) -> None:
    first = managers()
    await first.start()
    handles = []
    for n in range(4):
        record = await first.spawn(request(work, f"echo run {n}"))
        await first.wait(record.handle, 10)
        await first.answered(record.handle)  # its waiter's result stored: ended and reported
        handles.append(record.handle)
    running = await first.spawn(request(work, "sleep 60"))
    second = managers(keep_ended=2)
    await second.start()
    kept = {r.handle for r in second.list()}
    assert kept == {handles[2], handles[3], running.handle}
    folder = tmp_path / "processes"
    assert sorted(p.name for p in folder.glob(f"{handles[0]}*")) == []
    assert (folder / f"{handles[3]}.log").read_text() == "run 3\n"
