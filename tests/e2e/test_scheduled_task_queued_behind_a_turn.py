"""A scheduled task queued behind another turn of its session (one waiting for a person's
approval, for hours perhaps) takes no place among `scheduling.max_concurrent_runs` while it
waits: the other schedules go on, and the task runs once that turn is over."""

from __future__ import annotations

import asyncio
from typing import Any

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import Api
from tests.e2e.test_schedules_api import api, history, until

__all__ = ["api"]  # the fixtures (the server: one run place, max_concurrent_runs 1)


async def test_a_task_waiting_behind_a_pending_approval_holds_up_no_other_schedule(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    session_id = await api.new_session()
    fake_llm.enqueue(tool_calls([("bash", {"command": "ls /"})]), text("listed"), text("task done"))
    status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "list /"})
    assert status in (200, 202)

    async def asking() -> list[dict[str, Any]]:
        _status, session = await api.call("GET", f"/api/v1/sessions/{session_id}")
        return list(session.get("pending_approvals") or [])

    pending = (await until(asking))[0]
    body = {"agent": "helper", "session_id": session_id, "every": "1h", "task": "tidy up"}
    status, task = await api.call("POST", "/api/v1/schedules", body)
    assert status == 201, task
    task_id = task["schedule"]["id"]
    task_run = asyncio.create_task(api.call("POST", f"/api/v1/schedules/{task_id}/run"))

    async def claimed() -> list[dict[str, Any]] | None:
        _status, shown = await api.call("GET", f"/api/v1/schedules/{task_id}")
        return shown["runs"] or None

    await until(claimed)  # the task's run is claimed and queued behind the turn asking for approval
    other = await api.new_session()
    body = {"agent": "helper", "session_id": other, "every": "1h", "message": "stretch"}
    status, reminder = await api.call("POST", "/api/v1/schedules", body)
    assert status == 201, reminder

    status, ran = await asyncio.wait_for(
        api.call("POST", f"/api/v1/schedules/{reminder['schedule']['id']}/run"), 10
    )

    assert (status, ran["run"]["status"]) == (200, "ok")
    assert any(e["type"] == "notification" for e in await history(api, other))
    status, _ = await api.call(
        "POST",
        f"/api/v1/sessions/{session_id}/approve",
        {"call_id": pending["call_id"], "decision": "allow_once"},
    )
    assert status == 200
    status, done = await asyncio.wait_for(task_run, 10)
    assert (status, done["run"]["status"]) == (200, "ok")
    assert "task done" in [e.get("content") for e in await history(api, session_id)]
