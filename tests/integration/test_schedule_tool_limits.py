"""What an agent schedules itself is bounded: a wrong or prompt-injected `schedule` call with
`every: 1s` posted to its chat every second, and nothing capped how many it could make. Recurring
runs of the agent's own schedules are at least `scheduling.agent_min_interval` apart (1m) and it
may have `scheduling.agent_max_active` (20) of its own active; a person's schedules are not bound."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from duragent.scheduling.service import Scheduler
from duragent.tools.base import ToolContext
from duragent.tools.schedule import ScheduleArgs, ScheduleTool
from tests.integration.test_scheduler import T0, Clock, Recorder, build, harness

__all__ = ["harness"]  # the fixture


async def create(scheduler: Scheduler, tmp_path: Path, **timing: str) -> tuple[bool, str]:
    ctx = ToolContext(agent="helper", session_id="s_DEST", workdir=tmp_path, schedules=scheduler)
    args = ScheduleArgs.model_validate({"action": "create", "message": "drink water", **timing})
    result = await ScheduleTool().run(args, ctx)
    return result.ok, result.content


def stored(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "schedules").glob("sch_*.yaml"))


@pytest.mark.parametrize(
    ("timing", "said"),
    [
        ({"every": "1s"}, "every 1s is too often: a schedule you make runs at most every 1m"),
        ({"cron": "*/10 * * * * *"}, "cron */10 * * * * * is too often (runs 10s apart)"),
        ({"cron": "* * * * * *"}, "(runs 1s apart)"),
    ],
)
async def test_an_agent_cannot_make_a_schedule_that_runs_more_often_than_the_minimum(
    harness: Callable[..., Scheduler], tmp_path: Path, timing: dict[str, str], said: str
) -> None:
    scheduler = harness(Clock(T0), Recorder())
    await scheduler.start()

    ok, content = await create(scheduler, tmp_path, **timing)

    assert not ok
    assert said in content
    assert "scheduling.agent_min_interval" in content
    assert stored(tmp_path) == []


@pytest.mark.parametrize("timing", [{"every": "1m"}, {"cron": "0-5 9 * * *"}, {"in": "5s"}])
async def test_schedules_at_the_minimum_and_one_shots_are_made(
    harness: Callable[..., Scheduler], tmp_path: Path, timing: dict[str, str]
) -> None:
    scheduler = harness(Clock(T0), Recorder())
    await scheduler.start()

    ok, content = await create(scheduler, tmp_path, **timing)

    assert ok, content
    assert len(stored(tmp_path)) == 1


async def test_the_minimum_is_the_persons_to_change(
    harness: Callable[..., Scheduler], tmp_path: Path
) -> None:
    scheduler = harness(Clock(T0), Recorder(), agent_min_interval=timedelta(seconds=1))
    await scheduler.start()

    ok, content = await create(scheduler, tmp_path, every="1s")

    assert ok, content


async def test_an_agent_has_at_most_max_active_schedules_of_its_own(
    harness: Callable[..., Scheduler], tmp_path: Path
) -> None:
    scheduler = harness(Clock(T0), Recorder(), agent_max_active=2)
    await scheduler.start()
    # a person's own schedule of the same agent does not count against it
    await scheduler.create(build(scheduler, every="1h"))
    first = await create(scheduler, tmp_path, every="1h")
    second = await create(scheduler, tmp_path, every="2h")

    ok, content = await create(scheduler, tmp_path, every="3h")

    assert first[0]
    assert second[0]
    assert not ok
    assert "you already have 2 active schedules of your own" in content
    assert "scheduling.agent_max_active" in content
    assert len(stored(tmp_path)) == 3
    ctx = ToolContext(agent="helper", session_id="s_DEST", workdir=tmp_path, schedules=scheduler)
    made = next(s for s in scheduler.schedules.values() if s.created_by == "session s_DEST")
    await ScheduleTool().run(ScheduleArgs.model_validate({"action": "cancel", "schedule_id": made.id}), ctx)
    assert (await create(scheduler, tmp_path, every="3h"))[0]
