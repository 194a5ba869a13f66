"""Which changes the human-edit watcher credits to an agent's background process: the rule of
`duragent.vcs.process_writes`, over process records as the process manager writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from duragent.processes.record import ProcessRecord, render_record
from duragent.vcs.process_writes import process_that_changed, read_process_spans

STARTED = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)


def write_record(folder: Path, handle: str, agent: str, ended: datetime | None) -> None:
    record = ProcessRecord(
        handle=handle,
        agent=agent,
        session_id="s_1",
        command="make",
        started_at=STARTED,
        status="running" if ended is None else "exited",
        ended_at=ended,
        exit_code=None if ended is None else 0,
    )
    (folder / f"{handle}.yaml").write_text(render_record(record))


def at(seconds: float) -> float:
    return (STARTED + timedelta(seconds=seconds)).timestamp()


def test_a_change_is_the_agents_only_while_its_process_ran_and_only_in_its_own_or_shared_folders(
    tmp_path: Path,
) -> None:
    write_record(tmp_path, "proc_ended", "helper", STARTED + timedelta(seconds=10))
    write_record(tmp_path, "proc_running", "builder", None)
    (tmp_path / "proc_broken.yaml").write_text("not: [a record")
    spans = read_process_spans(tmp_path)
    assert sorted(span.handle for span in spans) == ["proc_ended", "proc_running"]

    helpers = process_that_changed(spans, "helper", at(5))
    assert helpers is not None
    assert helpers.handle == "proc_ended"
    assert process_that_changed(spans, "helper", at(11)) is None  # after its end: a person's
    assert process_that_changed(spans, "helper", at(-1)) is None  # before its start
    assert process_that_changed(spans, "other", at(5)) is None  # another agent's folder
    shared = process_that_changed(spans, None, at(3600))  # world memory, skills/, tools/
    assert shared is not None
    assert shared.handle == "proc_running"
    assert process_that_changed(spans, "helper", None) is None
