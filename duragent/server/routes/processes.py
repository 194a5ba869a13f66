"""Background processes for operators: GET /api/admin/v1/processes[/{handle}], POST .../{handle}/kill.

An agent sees only its own processes through its tool; an operator sees every agent's, reads
their output, and stops a runaway one. Output and commands are redacted like every server reply
(a command line may carry a token the agent was given).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from duragent.processes.manager import ProcessManager
from duragent.processes.record import ProcessRecord
from duragent.server.bodies import Body, ProblemOut, Reply, json_reply, read_query
from duragent.server.openapi import documented
from duragent.server.problems import HttpProblem
from duragent.server.state import STATE

#: Most bytes of output one request returns.
MAX_LOG_BYTES = 256 * 1024


class ProcessQuery(Body):
    """GET /api/admin/v1/processes query string."""

    agent: str | None = None
    running: bool = Field(False, description="Only processes still running.")


class LogQuery(Body):
    """GET /api/admin/v1/processes/{handle} query string."""

    offset: int | None = Field(None, ge=0, description="First byte of output (default: the end).")
    limit: int = Field(16 * 1024, ge=1, le=MAX_LOG_BYTES, description="Most bytes of output.")


class ProcessOut(Reply):
    """One process: its metadata file's keys, and part of its output when asked for one."""

    process: dict[str, Any]
    output: dict[str, Any] | None = None


class ProcessList(Reply):
    """GET /api/admin/v1/processes."""

    processes: list[ProcessOut]


def _processes(request: web.Request) -> ProcessManager:
    processes = request.app[STATE].processes
    if processes is None:
        raise HttpProblem(503, "background processes are not available yet (the server is starting)")
    return processes


def _out(request: web.Request, record: ProcessRecord, output: dict[str, Any] | None = None) -> ProcessOut:
    redact = request.app[STATE].workspace.guard.redact_value
    return ProcessOut(process=redact(record.to_document()), output=redact(output) if output else None)


@documented(
    "Every agent's background processes, oldest first.", query=ProcessQuery, responses={200: ProcessList}
)
async def list_processes(request: web.Request) -> web.Response:
    """GET /api/admin/v1/processes?agent=&running=."""
    query = read_query(request, ProcessQuery)
    records = _processes(request).list(query.agent)
    if query.running:
        records = [r for r in records if not r.ended]
    return json_reply(ProcessList(processes=[_out(request, r) for r in records]))


@documented(
    "One process and part of its output (offset/limit in bytes; default the end).",
    query=LogQuery,
    responses={200: ProcessOut, 404: ProblemOut},
)
async def get_process(request: web.Request) -> web.Response:
    """GET /api/admin/v1/processes/{handle}."""
    query = read_query(request, LogQuery)
    processes = _processes(request)
    handle = request.match_info["handle"]
    record = processes.get(handle)
    part = await processes.read_log(handle, None, query.offset, query.limit)
    output = {
        "text": part.text,
        "offset": part.offset,
        "end": part.end,
        "total": part.total,
        "dropped": part.dropped,
    }
    return json_reply(_out(request, record, output))


@documented(
    "Stop a running process (SIGTERM to its group, SIGKILL after the grace period); its session is told.",
    responses={200: ProcessOut, 400: ProblemOut, 404: ProblemOut},
)
async def kill_process(request: web.Request) -> web.Response:
    """POST /api/admin/v1/processes/{handle}/kill."""
    record = await _processes(request).kill(request.match_info["handle"], reason="killed by an operator")
    return json_reply(_out(request, record))
