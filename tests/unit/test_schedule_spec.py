"""Schedule documents: timings (at, every, cron with time zones), payloads, and errors with file:line."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from duragent.errors import ConfigError
from duragent.scheduling.spec import Destination, Schedule, ScheduleRequest, last_slot, next_slot
from duragent.scheduling.store import read_schedule_file, render_schedule

CREATED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def schedule(**timing: object) -> Schedule:
    return Schedule.model_validate(
        {"id": "sch_TEST", "agent": "helper", "created_at": CREATED, "message": "hi", **timing}
    )


def test_cron_is_read_in_its_time_zone_across_daylight_saving() -> None:
    weekday_nine = schedule(cron="0 9 * * MON-FRI", timezone="Europe/Paris")
    # Friday 27 March 2026 is winter time (UTC+1); Monday 30 March is summer time (UTC+2).
    assert next_slot(weekday_nine, datetime(2026, 3, 27, 7, 0, tzinfo=UTC)) == datetime(
        2026, 3, 27, 8, 0, tzinfo=UTC
    )
    assert next_slot(weekday_nine, datetime(2026, 3, 27, 9, 0, tzinfo=UTC)) == datetime(
        2026, 3, 30, 7, 0, tzinfo=UTC
    )


def test_a_daily_time_in_the_hour_clocks_repeat_fires_once_and_an_hourly_one_twice() -> None:
    """Paris goes from 03:00 summer time back to 02:00 on 25 October 2026: 02:30 happens twice."""
    daily = schedule(cron="30 2 * * *", timezone="Europe/Paris")
    hourly = schedule(cron="30 * * * *", timezone="Europe/Paris")
    evening = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)

    first = next_slot(daily, evening)
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 summer time
    assert next_slot(daily, first) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # the next day
    assert last_slot(daily, datetime(2026, 10, 25, 1, 45, tzinfo=UTC)) == first
    slots = [evening]
    for _ in range(6):
        slots.append(next_slot(hourly, slots[-1]))  # type: ignore[arg-type]
    assert datetime(2026, 10, 25, 0, 30, tzinfo=UTC) in slots
    assert datetime(2026, 10, 25, 1, 30, tzinfo=UTC) in slots  # a real hour later: both run


def test_times_are_whole_seconds_and_in_rounds_up() -> None:
    """The run history records slots to the second: a fraction would hide that a slot ran."""
    request = ScheduleRequest.model_validate({"in": "2s", "message": "tea"})
    now = CREATED + timedelta(milliseconds=250)
    made = request.build("helper", destination=Destination(), created_by="cli", now=now)
    assert (made.at, made.created_at) == (CREATED + timedelta(seconds=3), CREATED)


def test_six_field_cron_has_seconds_first() -> None:
    every_ten_seconds = schedule(cron="*/10 * * * * *")
    assert next_slot(every_ten_seconds, datetime(2026, 3, 2, 0, 0, 5, tzinfo=UTC)) == datetime(
        2026, 3, 2, 0, 0, 10, tzinfo=UTC
    )
    assert last_slot(every_ten_seconds, datetime(2026, 3, 2, 0, 0, 15, tzinfo=UTC)) == datetime(
        2026, 3, 2, 0, 0, 10, tzinfo=UTC
    )


def test_every_counts_from_creation_and_never_returns_a_past_slot() -> None:
    hourly = schedule(every="1h")
    assert next_slot(hourly, CREATED) == CREATED + timedelta(hours=1)
    assert next_slot(hourly, CREATED + timedelta(hours=5, minutes=1)) == CREATED + timedelta(hours=6)
    assert next_slot(hourly, CREATED + timedelta(hours=6)) == CREATED + timedelta(hours=7)


def test_a_one_shot_has_no_slot_after_its_moment() -> None:
    once = schedule(at="2026-03-01T13:00:00Z")
    assert next_slot(once, CREATED) == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    assert next_slot(once, datetime(2026, 3, 1, 13, 0, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"at": "2026-03-01T13:00:00Z", "every": "1h"}, "exactly one of at, every or cron (found at, every)"),
        ({"cron": "0 9 * *"}, "5 fields"),
        ({"cron": "0 25 * * *"}, "invalid cron expression"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"at": "2026-03-01T13:00:00"}, "time zone offset"),
        ({"every": "500ms"}, "at least 1s"),
        ({"every": "1500ms"}, "every must be whole seconds, got 1s500ms"),
        ({"cron": "0 0 30 2 *"}, "cron expression '0 0 30 2 *' never fires (no month has that day)"),
    ],
)
def test_invalid_timings_say_what_is_wrong(fields: dict[str, object], expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        schedule(**fields)


def test_a_request_with_in_becomes_a_one_shot_from_now() -> None:
    request = ScheduleRequest.model_validate({"in": "20m", "task": "check the build"})
    made = request.build("helper", destination=Destination(session_id="s_1"), created_by="cli", now=CREATED)
    assert made.at == CREATED + timedelta(minutes=20)
    assert made.payload_kind == "task"
    assert made.id.startswith("sch_")


def test_a_request_with_two_payloads_is_refused() -> None:
    request = ScheduleRequest.model_validate({"every": "1h", "message": "a", "task": "b"})
    with pytest.raises(ValueError, match="exactly one of message or task"):
        request.build("helper", destination=Destination(), created_by="cli", now=CREATED)


def test_a_file_round_trips_and_an_edited_mistake_names_its_line(tmp_path: Path) -> None:
    original = schedule(cron="0 9 * * *", timezone="UTC", retry={"max_retries": 2})
    path = tmp_path / "sch_TEST.yaml"
    path.write_text(render_schedule(original))
    assert read_schedule_file(path) == original
    path.write_text(path.read_text().replace("cron: 0 9 * * *", "cron: 0 9 * *"))
    with pytest.raises(ConfigError) as caught:
        read_schedule_file(path)
    problem = caught.value.problems[0]
    assert problem.location is not None
    assert problem.location.file == str(path)
    assert problem.location.line == path.read_text().splitlines().index("cron: 0 9 * *") + 1
    assert "5 fields" in problem.message
