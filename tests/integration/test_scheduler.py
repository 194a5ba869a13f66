"""The scheduler over the file store, with a clock the test moves: firing, restarts, retries, edits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from duragent.scheduling.service import DeliveryFailed, Scheduler, SchedulerSettings, current_run_place
from duragent.scheduling.spec import Destination, Schedule, ScheduleRequest
from duragent.scheduling.store import FileScheduleStore, RunRecord, render_schedule
from tests.waiting import eventually

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
    # the latest missed slot runs once (it is within misfire_grace), the eight before it never
    await until(lambda: len(deliver.delivered) == 2)
    assert deliver.delivered[-1] == (made.id, T0 + timedelta(minutes=10))
    assert second.planned[made.id] == T0 + timedelta(minutes=11)
    await asyncio.sleep(0.05)
    assert len(deliver.delivered) == 2
    clock.now = T0 + timedelta(minutes=11)
    second.poke()
    await until(lambda: len(deliver.delivered) == 3)
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


class Held(Recorder):
    """A delivery whose runs wait until released, like a task's turn; a run may wait for a person."""

    def __init__(self, *, waits_for_a_person: bool = False) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.waits_for_a_person = waits_for_a_person
        self.in_progress = 0
        self.session_id = "s_DEST"

    async def __call__(self, schedule: Schedule, slot: datetime) -> str:
        self.delivered.append((schedule.id, slot))
        place = current_run_place.get()
        if self.waits_for_a_person and place is not None:
            place.give_back()  # as the session delivery does when the task's turn asks for approval
        self.in_progress += 1
        try:
            await self.release.wait()
        finally:
            self.in_progress -= 1
        return self.session_id


async def test_a_cron_that_never_fires_is_refused_and_a_file_with_one_stops_nothing(
    harness: Callable[..., Scheduler], tmp_path: Path
) -> None:
    clock, deliver = Clock(T0), Recorder()
    scheduler = harness(clock, deliver)
    with pytest.raises(ValueError, match=r"cron: cron expression '0 0 30 2 \*' never fires"):
        build(scheduler, cron="0 0 30 2 *")
    steady = build(scheduler, every="1m")
    never = render_schedule(steady).replace("every: 1m", "cron: 0 0 31 4 *").replace(steady.id, "sch_01NEVER")
    (tmp_path / "schedules").mkdir()
    (tmp_path / "schedules" / "sch_01NEVER.yaml").write_text(never)

    await scheduler.start()  # the server starts
    await scheduler.create(steady)
    clock.now = T0 + timedelta(minutes=1)
    scheduler.poke()

    await until(lambda: len(deliver.delivered) == 1)  # and the other schedules fire
    listing = await scheduler.store.load_all()
    assert "sch_01NEVER.yaml" in str(listing.problems[0])
    assert "never fires" in str(listing.problems[0])


async def test_a_one_shot_made_with_in_runs_once_across_a_crash_during_its_run(
    harness: Callable[..., Scheduler],
) -> None:
    """`in:` lands between two seconds; the run history records slots to the second."""
    clock, deliver = Clock(T0 + timedelta(milliseconds=250)), Held()
    first = harness(clock, deliver)
    await first.start()
    made = await first.create(build(first, **{"in": "2s"}))
    assert made.at == T0 + timedelta(seconds=3)  # rounded up: never early
    clock.now = T0 + timedelta(seconds=3)
    first.poke()
    await until(lambda: deliver.in_progress == 1)
    await first.stop()  # killed while the task ran: claimed, never recorded as over

    second = harness(clock, Recorder())
    await second.start()

    assert made.id not in second.planned  # recognised as run: nothing left to fire
    assert second.schedules[made.id].status == "completed"


async def test_runs_waiting_for_a_person_hold_up_no_other_schedule(harness: Callable[..., Scheduler]) -> None:
    clock, waiting = Clock(T0), Held(waits_for_a_person=True)
    scheduler = harness(clock, waiting, max_concurrent_runs=2)
    await scheduler.start()
    for _ in range(3):
        await scheduler.create(build(scheduler, **{"in": "1m"}))
    clock.now = T0 + timedelta(minutes=1)
    scheduler.poke()
    await until(lambda: waiting.in_progress == 3)  # all three ask for approval, none blocks

    steady = Held()
    scheduler.deliver = steady
    steady.release.set()
    made = await scheduler.create(build(scheduler, every="1m"))
    clock.now = T0 + timedelta(minutes=2)
    scheduler.poke()
    await until(lambda: (made.id, T0 + timedelta(minutes=2)) in steady.delivered)
    delivered = [run.status for run in await scheduler.runs(made.id)]
    assert delivered[-1] == "ok"
    waiting.release.set()


async def test_a_recurring_schedule_skips_its_slots_while_its_last_run_goes_on(
    harness: Callable[..., Scheduler],
) -> None:
    clock, deliver = Clock(T0), Held()
    scheduler = harness(clock, deliver)
    await scheduler.start()
    made = await scheduler.create(build(scheduler, every="1m"))
    for minute in range(1, 6):  # a long task: five slots pass while its first run goes on
        clock.now = T0 + timedelta(minutes=minute)
        scheduler.poke()
        await until(lambda: scheduler.planned[made.id] == clock.now + timedelta(minutes=1))

    finished = scheduler.run_finished
    deliver.release.set()
    await asyncio.wait_for(finished.wait(), 10)  # its history written: every skipped slot was met

    assert deliver.delivered == [(made.id, T0 + timedelta(minutes=1))]  # one run, then no burst
    assert [run.status for run in await scheduler.runs(made.id)] == ["started", "ok"]


async def test_a_one_shot_removed_while_it_runs_stays_removed(
    harness: Callable[..., Scheduler], tmp_path: Path
) -> None:
    clock, deliver = Clock(T0), Held()
    scheduler = harness(clock, deliver)
    await scheduler.start()
    made = await scheduler.create(build(scheduler, **{"in": "1m"}))
    clock.now = T0 + timedelta(minutes=1)
    scheduler.poke()
    await until(lambda: deliver.in_progress == 1)

    await scheduler.remove(made.id)
    finished = scheduler.run_finished
    deliver.release.set()
    await asyncio.wait_for(finished.wait(), 10)  # the run is over, bookkeeping and all

    assert not (tmp_path / "schedules" / f"{made.id}.yaml").exists()
    assert not (tmp_path / "schedules" / "runs" / f"{made.id}.jsonl").exists()
    assert made.id not in {s.id for s in await scheduler.list_schedules(include_finished=True)}


async def test_a_schedule_whose_session_is_gone_keeps_the_one_its_run_made(
    harness: Callable[..., Scheduler],
) -> None:
    clock, deliver = Clock(T0), Held()
    deliver.release.set()
    deliver.session_id = "s_NEW"  # the delivery found s_DEST deleted and made a session
    scheduler = harness(clock, deliver)
    await scheduler.start()
    made = await scheduler.create(build(scheduler, every="1m"))
    clock.now = T0 + timedelta(minutes=1)
    scheduler.poke()

    async def kept_the_new_session() -> bool | None:
        return (await scheduler.get(made.id)).destination.session_id == "s_NEW" or None

    assert await eventually(kept_the_new_session)


async def test_a_one_shot_resumed_after_its_time_runs_within_the_grace(
    harness: Callable[..., Scheduler],
) -> None:
    clock, deliver = Clock(T0), Recorder()
    scheduler = harness(clock, deliver)
    await scheduler.start()
    made = await scheduler.create(build(scheduler, **{"in": "10m"}))
    await scheduler.pause(made.id)
    clock.now = T0 + timedelta(minutes=15)

    await scheduler.resume(made.id)

    await until(lambda: scheduler.schedules[made.id].status == "completed")
    assert deliver.delivered == [(made.id, T0 + timedelta(minutes=10))]


async def test_a_schedule_paused_elsewhere_is_not_delivered_by_a_worker_that_planned_it(
    tmp_path: Path,
) -> None:
    """Workers re-read the store every 30 s; a pause (or removal) made through another worker
    meanwhile must still stop this one's next run."""
    clock, deliver = Clock(T0), Recorder()
    shared = tmp_path / "schedules"
    this = Scheduler(
        FileScheduleStore(shared), deliver, clock=clock, settings=SchedulerSettings(poll_interval=3600)
    )
    other = Scheduler(
        FileScheduleStore(shared), Recorder(), clock=clock, settings=SchedulerSettings(poll_interval=3600)
    )
    await this.start()
    await other.start()
    try:
        paused = await this.create(build(this, every="1m"))
        removed = await this.create(build(this, every="1m"))
        await other.pause(paused.id)
        await other.remove(removed.id)

        clock.now = T0 + timedelta(minutes=1)
        this.poke()
        await until(lambda: paused.id not in this.planned and removed.id not in this.planned)

        assert deliver.delivered == []
        assert await this.store.runs(paused.id) == []
    finally:
        await this.stop()
        await other.stop()
