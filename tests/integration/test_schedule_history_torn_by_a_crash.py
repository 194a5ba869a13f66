"""A run history whose last line a crash tore: the next run's line is still read back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from duragent.scheduling.service import Scheduler
from tests.integration.test_scheduler import T0, Clock, Held, Recorder, build, harness, until

__all__ = ["harness"]  # the fixtures


async def test_a_claim_after_a_torn_line_keeps_a_one_shot_from_running_twice(
    harness: Callable[..., Scheduler], tmp_path: Path
) -> None:
    clock, deliver = Clock(T0), Held()
    first = harness(clock, deliver)
    await first.start()
    made = await first.create(build(first, **{"in": "10m"}))
    runs = tmp_path / "schedules" / "runs" / f"{made.id}.jsonl"
    runs.parent.mkdir(parents=True, exist_ok=True)
    # a power cut while a line was written (a manual run's, say): half a line, no newline
    runs.write_text('{"ts":"2026-06-01T09:01:00.000Z","slot":"2026-06-01T09:0')
    await first.stop()

    clock.now = T0 + timedelta(minutes=11)  # it came due while the server was down
    second = harness(clock, deliver)
    await second.start()
    await until(lambda: deliver.in_progress == 1)
    await second.stop()  # killed while delivering: claimed, never recorded as over

    third = harness(clock, Recorder())
    await third.start()

    assert deliver.delivered == [(made.id, T0 + timedelta(minutes=10))]
    assert made.id not in third.planned
    assert third.schedules[made.id].status == "completed"
    assert [r.status for r in await third.runs(made.id)] == ["started"]  # the torn line is skipped
