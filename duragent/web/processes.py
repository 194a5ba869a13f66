"""Dashboard: every agent's background processes (running first), one process's output, kill.

What `GET /api/admin/v1/processes` and `duragent process` show, to a login made with the admin token
(`admin_page`), as that API needs it; commands, reasons and output are
redacted like every server reply (a command line may carry a token the agent was given).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from duragent.processes.manager import ProcessManager
from duragent.processes.record import ProcessRecord
from duragent.server.problems import HttpProblem
from duragent.server.state import STATE
from duragent.web.login import UI_PREFIX, form_endpoint, require_admin
from duragent.web.pages import admin_page, render, see_other

#: Bytes of output a process's page shows (the newest).
OUTPUT_TAIL_BYTES = 16 * 1024


def _processes(request: web.Request) -> ProcessManager:
    processes = request.app[STATE].processes
    if processes is None:
        raise HttpProblem(503, "background processes are not available yet (the server is starting)")
    return processes


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else ""


def _row(request: web.Request, record: ProcessRecord) -> dict[str, Any]:
    redact = request.app[STATE].workspace.guard.redact
    return {
        "handle": record.handle,
        "agent": record.agent,
        "session_id": record.session_id,
        "command": redact(record.command),
        "label": redact(record.label or ""),
        "running": not record.ended,
        "status": record.status,
        "outcome": redact(record.outcome()),
        "started": _when(record.started_at),
        "ended": _when(record.ended_at),
    }


@admin_page("The Processes page")
async def list_processes(request: web.Request) -> web.Response:
    """GET /ui/processes: running ones first, then those that ended; newest first in each."""
    records = sorted(_processes(request).list(), key=lambda r: r.started_at, reverse=True)
    records.sort(key=lambda r: r.ended)  # (a stable sort: newest first stays within each group)
    return render(request, "processes.html", {"rows": [_row(request, r) for r in records]})


@admin_page("A process's page")
async def show_process(request: web.Request) -> web.Response:
    """GET /ui/processes/{handle}: its facts and the end of its output."""
    processes = _processes(request)
    handle = request.match_info["handle"]
    record = processes.get(handle)  # (404 naming the handle)
    tail = await processes.read_log(handle, None, None, OUTPUT_TAIL_BYTES)
    context = {
        "p": _row(request, record),
        "output": request.app[STATE].workspace.guard.redact(tail.text),
        "shown_from": tail.offset,
        "total": tail.total,
        "done": request.query.get("done"),
    }
    return render(request, "process.html", context)


@form_endpoint
async def kill_process(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/processes/{handle}/kill: stop it (its session is told); 400 when it has ended, 403
    for a login not made with the admin token (the API's kill needs it too)."""
    require_admin(request, "killing a process")
    handle = request.match_info["handle"]
    await _processes(request).kill(handle, reason="killed from the dashboard")
    raise see_other(f"{UI_PREFIX}/processes/{handle}?done=killed")
