"""Dashboard: schedules (state, next run, recent runs, broken files); pause, resume, run now, delete.

"Run now" starts the run and waits a few seconds for it: a message is delivered by then; a task
whose turn takes longer goes on in its session and the page says it was started.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from duragent.scheduling.service import Scheduler
from duragent.scheduling.spec import FINISHED, Schedule
from duragent.scheduling.store import RunRecord
from duragent.server.problems import HttpProblem
from duragent.server.state import STATE
from duragent.stores.base import changes_by_person
from duragent.web.login import UI_PREFIX, form_endpoint
from duragent.web.pages import render, see_other

log = logging.getLogger(__name__)

#: Runs shown on a schedule's page, and in the list (the newest ones).
RUNS_SHOWN = 20
RUNS_LISTED = 3
#: How long "Run now" waits for the run before answering.
RUN_NOW_WAIT = 5.0
#: "Run now" runs still going after the page answered (kept so they are not collected).
RUNS_IN_PROGRESS = web.AppKey("dashboard_schedule_runs", set[asyncio.Task[RunRecord]])


def _scheduler(request: web.Request) -> Scheduler:
    scheduler = request.app[STATE].schedules
    if scheduler is None:
        raise HttpProblem(503, "schedules are not available yet (the server is starting)")
    return scheduler


async def _row(scheduler: Scheduler, schedule: Schedule, runs: int) -> dict[str, object]:
    history = await scheduler.store.runs(schedule.id, limit=runs * 2)
    return {
        "schedule": schedule,
        "next_run": scheduler.planned.get(schedule.id),
        "runs": list(reversed(outcomes(history)))[:runs],
        "finished": schedule.status in FINISHED,
    }


def outcomes(history: list[RunRecord]) -> list[RunRecord]:
    """The runs as a person reads them: a `started` claim only while its run has no outcome yet."""
    ended = {run.slot for run in history if run.status != "started"}
    return [run for run in history if run.status != "started" or run.slot not in ended]


async def schedules(request: web.Request) -> web.Response:
    """GET /ui/schedules: every schedule (finished ones last), its next run and last runs."""
    scheduler = _scheduler(request)
    listing = await scheduler.reload()
    everything = await scheduler.list_schedules(include_finished=True)
    ordered = sorted(everything, key=lambda s: s.status in FINISHED)
    rows = [await _row(scheduler, s, RUNS_LISTED) for s in ordered]
    context = {
        "rows": rows,
        "problems": [str(p) for p in listing.problems],
        "done": request.query.get("done"),
        "enabled": request.app[STATE].config.scheduling.enabled,
    }
    return render(request, "schedules.html", context)


async def schedule_page(request: web.Request) -> web.Response:
    """GET /ui/schedules/{id}: the schedule's document, next run and recent runs."""
    scheduler = _scheduler(request)
    schedule = await scheduler.get(request.match_info["schedule_id"])
    row = await _row(scheduler, schedule, RUNS_SHOWN)
    return render(request, "schedule.html", {**row, "done": request.query.get("done")})


@form_endpoint
async def pause(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/schedules/{id}/pause."""
    schedule_id = request.match_info["schedule_id"]
    with changes_by_person():  # a person's click, never the agent's: committed as theirs
        await _scheduler(request).pause(schedule_id)
    raise see_other(f"{UI_PREFIX}/schedules/{schedule_id}?done=paused")


@form_endpoint
async def resume(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/schedules/{id}/resume."""
    schedule_id = request.match_info["schedule_id"]
    with changes_by_person():
        await _scheduler(request).resume(schedule_id)
    raise see_other(f"{UI_PREFIX}/schedules/{schedule_id}?done=resumed")


@form_endpoint
async def run_now(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/schedules/{id}/run: run once now; wait briefly for the outcome."""
    scheduler = _scheduler(request)
    schedule_id = request.match_info["schedule_id"]
    await scheduler.get(schedule_id)  # 404 before anything starts
    task = asyncio.create_task(scheduler.run_now(schedule_id), name=f"dashboard run {schedule_id}")
    running = request.app[RUNS_IN_PROGRESS]
    running.add(task)
    task.add_done_callback(running.discard)
    task.add_done_callback(_log_failure)
    done, _ = await asyncio.wait({task}, timeout=RUN_NOW_WAIT)
    if not done:
        raise see_other(f"{UI_PREFIX}/schedules/{schedule_id}?done=started")
    record = task.result()  # a refusal (already running) becomes its error page
    raise see_other(f"{UI_PREFIX}/schedules/{schedule_id}?done=ran-{record.status}")


def _log_failure(task: asyncio.Task[RunRecord]) -> None:
    """A run the page stopped waiting for: its refusal or failure goes to the log (the run
    history records every run that started)."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.warning("%s: %s", task.get_name(), error)


@form_endpoint
async def delete(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/schedules/{id}/delete (confirm=yes): remove the file and its history."""
    schedule_id = request.match_info["schedule_id"]
    if form.get("confirm") != "yes":
        raise see_other(f"{UI_PREFIX}/schedules/{schedule_id}")
    with changes_by_person():
        await _scheduler(request).remove(schedule_id)
    raise see_other(f"{UI_PREFIX}/schedules?done=deleted")


async def _forget_runs(app: web.Application) -> None:
    tasks = [*app[RUNS_IN_PROGRESS]]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def add_routes(app: web.Application) -> None:
    """Register the schedule pages and forms."""
    app[RUNS_IN_PROGRESS] = set()
    app.on_shutdown.append(_forget_runs)
    app.router.add_get(f"{UI_PREFIX}/schedules", schedules)
    app.router.add_get(f"{UI_PREFIX}/schedules/{{schedule_id}}", schedule_page)
    app.router.add_post(f"{UI_PREFIX}/schedules/{{schedule_id}}/pause", pause)
    app.router.add_post(f"{UI_PREFIX}/schedules/{{schedule_id}}/resume", resume)
    app.router.add_post(f"{UI_PREFIX}/schedules/{{schedule_id}}/run", run_now)
    app.router.add_post(f"{UI_PREFIX}/schedules/{{schedule_id}}/delete", delete)
