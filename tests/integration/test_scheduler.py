"""The scheduler over the file store, with a clock the test moves: firing, restarts, retries, edits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from duragent.scheduling.service import DeliveryFailed, Scheduler, SchedulerSettings
from duragent.scheduling.spec import Destination, Schedule, ScheduleRequest
from duragent.scheduling.store import FileScheduleStore, RunRecord, render_schedule

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """A delivery that records each run; it fails while `failures` is above zero."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, datetime]] = []
        self.failures = 0

    async def __call__(self, schedule: Schedule, slot: datetime) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise DeliveryFailed("the chat gateway is down")
        self.delivered.append((schedule.id, slot))
        return "s_DEST"


async def until(condition: Callable[[], object], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def until_runs(
    scheduler: Scheduler, schedule_id: str, condition: Callable[[list[RunRecord]], bool]
) -> list[RunRecord]:
    for _ in range(1000):
        runs = await scheduler.runs(schedule_id)
        if condition(runs):
            return runs
        await asyncio.sleep(0.01)
    raise AssertionError(f"run history never matched: {runs}")


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Callable[..., Scheduler]]:
    started: list[Scheduler] = []

    def make(clock: Clock, deliver: Recorder, **settings: object) -> Scheduler:
        store = FileScheduleStore(tmp_path / "schedules", runs_kept=int(settings.pop("runs_kept", 200)))  # type: ignore[call-overload]
        scheduler = Scheduler(
            store,
            deliver,
            settings=SchedulerSettings(**settings),  # type: ignore[arg-type]
            clock=clock,
            watch_folder=store.folder,
        )
        started.append(scheduler)
        return scheduler

    yield make
    for scheduler in started:
        await scheduler.stop()


def request(**fields: object) -> ScheduleRequest:
    return ScheduleRequest.model_validate({"message": "stand-up in 5 minutes", **fields})


def build(scheduler: Scheduler, **fields: object) -> Schedule:
    return request(**fields).build(
        "helper", destination=Destination(session_id="s_DEST"), created_by="test", now=scheduler.clock()
    )


async def test_a_one_shot_fires_once_at_its_time_and_is_then_completed(
    harness: Callable[..., Scheduler], tmp_path: Path
) -> None:
    clock, deliver = Clock(T0), Recorder()
    scheduler = harness(clock, deliver)
    await scheduler.start()
    made = await scheduler.create(build(scheduler, **{"in": "20m"}))
    assert (tmp_path / "schedules" / f"{made.id}.yaml").is_file()
    clock.now = T0 + timedelta(minutes=19)
    scheduler.poke()
    await asyncio.sleep(0.05)
    assert deliver.delivered == []
    clock.now = T0 + timedelta(minutes=20, seconds=1)
    scheduler.poke()
    await until(lambda: scheduler.schedules[made.id].status == "completed")
    assert deliver.delivered == [(made.id, T0 + timedelta(minutes=20))]
    assert "status: completed" in (tmp_path / "schedules" / f"{made.id}.yaml").read_text()
    runs = await scheduler.runs(made.id)
    assert [r.status for r in runs] == ["started", "ok"]


async def test_a_one_shot_due_while_the_server_was_down_runs_once_on_start(
    harness: Callable[..., Scheduler],
) -> None:
    clock, deliver = Clock(T0), Recorder()
    first = harness(clock, deliver)
    await first.start()
    made = await first.create(build(first, **{"in": "10m"}))
    await first.stop()
    clock.now = T0 + timedelta(minutes=40)  # down across its moment, within the 1h grace
    second = harness(clock, deliver)
    await second.start()
    await until(lambda: deliver.delivered)
    await until(lambda: second.schedules[made.id].status == "completed")
    await second.stop()
    third = harness(clock, deliver)
    await third.start()
    await asyncio.sleep(0.05)
    assert deliver.delivered == [(made.id, T0 + timedelta(minutes=10))]


async def test_a_one_shot_missed_beyond_the_grace_is_recorded_and_not_run(
    harness: Callable[..., Scheduler],
) -> None:
    clock, deliver = Clock(T0), Recorder()
    first = harness(clock, deliver)
    await first.start()
    made = await first.create(build(first, **{"in": "10m"}))
    await first.stop()
    clock.now = T0 + timedelta(hours=3)
    second = harness(clock, deliver, misfire_grace=timedelta(hours=1))
    await second.start()
    assert second.schedules[made.id].status == "completed"
    runs = await second.runs(made.id)
    assert runs[-1].status == "missed"
    assert "2h50m late" in str(runs[-1].error)
    assert deliver.delivered == []


async def test_a_run_claimed_before_a_crash_is_not_fired_again(harness: Callable[..., Scheduler]) -> None:
    clock, deliver = Clock(T0), Recorder()
    first = harness(clock, deliver)
    await first.start()
    made = await first.create(build(first, **{"in": "10m"}))
    await first.stop()
    # The server claimed the run, then died before recording how it went.
    assert await first.store.claim(made.id, T0 + timedelta(minutes=10), "local")
    clock.now = T0 + timedelta(minutes=11)
    second = harness(clock, deliver)
    await second.start()
    await asyncio.sleep(0.05)
    assert deliver.delivered == []
    assert second.schedules[made.id].status == "completed"


async def test_a_recurring_schedule_fires_its_next_slot_after_a_restart_not_a_burst(
    harness: Callable[..., Scheduler],
) -> None:
    clock, deliver = Clock(T0), Recorder()
    first = harness(clock, deliver)
    await first.start()
    made = await first.create(build(first, every="1m"))
    clock.now = T0 + timedelta(minutes=1)
    first.poke()
    await until(lambda: len(deliver.delivered) == 1)
    await first.stop()
    clock.now = T0 + timedelta(minutes=10, seconds=30)  # nine slots passed while down
    second = harness(clock, deliver)
    await second.start()
    assert second.planned[made.id] == T0 + timedelta(minutes=11)
    await asyncio.sleep(0.05)
    assert len(deliver.delivered) == 1
    clock.now = T0 + timedelta(minutes=11)
    second.poke()
    await until(lambda: len(deliver.delivered) == 2)
    assert deliver.delivered[-1] == (made.id, T0 + timedelta(minutes=11))
    assert second.planned[made.id] == T0 + timedelta(minutes=12)


async def test_a_failed_run_is_retried_with_backoff_until_it_succeeds(
    harness: Callable[..., Scheduler],
) -> None:
    clock, deliver = Clock(T0), Recorder()
    scheduler = harness(clock, deliver)
    await scheduler.start()
    deliver.failures = 2
    made = await scheduler.create(build(scheduler, **{"in": "1m", "max_retries": 3, "retry_delay": "10ms"}))
    clock.now = T0 + timedelta(minutes=1)
    scheduler.poke()
    await until(lambda: scheduler.schedules[made.id].status == "completed")
    last = (await scheduler.runs(made.id))[-1]
    assert (last.status, last.attempts, last.error) == ("ok", 3, None)


async def test_without_retries_a_failed_run_is_recorded_with_its_error(
    harness: Callable[..., Scheduler],
) -> None:
    clock, deliver = Clock(T0), Recorder()
    scheduler = harness(clock, deliver)
    await scheduler.start()
    deliver.failures = 1
    made = await scheduler.create(build(scheduler, every="1m"))
    clock.now = T0 + timedelta(minutes=1)
    scheduler.poke()
    runs = await until_runs(scheduler, made.id, lambda runs: any(r.status == "error" for r in runs))
    assert runs[-1].status == "error"
    assert runs[-1].error == "the chat gateway is down"
    assert scheduler.schedules[made.id].status == "active"  # a recurring schedule keeps firing


async def test_a_person_adding_editing_and_deleting_files_is_picked_up(
    harness: Callable[..., Scheduler], tmp_path: Path
) -> None:
    clock, deliver = Clock(T0), Recorder()
    scheduler = harness(clock, deliver)
    await scheduler.start()
    written = build(scheduler, cron="30 9 * * *")
    path = tmp_path / "schedules" / f"{written.id}.yaml"
    path.write_text(render_schedule(written))
    await until(lambda: scheduler.planned.get(written.id) == T0 + timedelta(minutes=30))
    path.write_text(path.read_text().replace("cron: 30 9 * * *", "cron: 45 9 * * *"))
    await until(lambda: scheduler.planned.get(written.id) == T0 + timedelta(minutes=45))
    path.write_text("id: [not closed\n")
    await asyncio.sleep(0.1)  # a broken file is reported; nothing else changes
    listing = await scheduler.store.load_all()
    assert listing.problems
    assert str(path) in str(listing.problems[0])
    path.unlink()
    await until(lambda: written.id not in scheduler.planned)


async def test_run_history_is_bounded(harness: Callable[..., Scheduler]) -> None:
    clock, deliver = Clock(T0), Recorder()
    scheduler = harness(clock, deliver, runs_kept=3)
    made = await scheduler.create(build(scheduler, every="1m"))
    for minute in range(1, 11):
        await scheduler.store.record_run(made.id, RunRecord(T0 + timedelta(minutes=minute), "ok"))
    path = scheduler.store.runs_folder / f"{made.id}.jsonl"  # type: ignore[attr-defined]
    assert len(path.read_text().splitlines()) <= 6
    runs = await scheduler.runs(made.id, limit=3)
    assert [r.slot for r in runs] == [T0 + timedelta(minutes=m) for m in (8, 9, 10)]
