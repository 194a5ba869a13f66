"""Schedules through the running server: the `schedule` tool, HTTP routes, delivery into sessions."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from duragent.access_tokens import auth_headers
from duragent.config import load_config
from duragent.server.app import create_app
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import AGENT_YAML, CHILD_ENV, Api, start_test_server, write_workspace


@pytest.fixture
async def api(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[Api]:
    config_path = write_workspace(tmp_path, fake_llm.url, git=True, agents={"helper": "continue"})
    agent_file = tmp_path / "data" / "agents" / "helper" / "agent.yaml"
    agent_file.write_text(
        AGENT_YAML.format(name="helper", url=fake_llm.url, on_disconnect="continue", max_background="2h")
        .replace("builtin: [bash]", "builtin: [bash, schedule, notify_user]")
        .replace('allow: ["bash:echo *"]', 'allow: ["bash:echo *", "schedule:*", "notify_user:*"]')
    )
    with config_path.open("a") as file:
        file.write("scheduling:\n  max_concurrent_runs: 1\n")  # one run at a time: waits show
    config = load_config(config_path)
    app = create_app(config, env=CHILD_ENV, shutdown_grace=2, idle_ttl=timedelta(minutes=5))
    server = await start_test_server(TestServer(app, host="127.0.0.1"))
    async with aiohttp.ClientSession(headers=auth_headers(config)) as http:
        yield Api(server, http)
    await server.close()


async def until(probe: Callable[[], Any], within: float = 20.0) -> Any:
    """Await `probe()` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await probe()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def history(api: Api, session_id: str) -> list[dict[str, Any]]:
    status, body = await api.call("GET", f"/api/v1/sessions/{session_id}/messages?limit=1000")
    assert status == 200, body
    return list(body["messages"])


async def test_the_agent_schedules_a_task_that_later_runs_as_a_turn_of_its_session(
    api: Api, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    fake_llm.enqueue(
        tool_calls(
            [("schedule", {"action": "create", "in": "1s", "task": "check the build", "label": "build"})]
        ),
        text("I will check in a second."),
        text("The build is green."),
    )
    session_id = await api.new_session()
    status, reply = await api.call(
        "POST", f"/api/v1/sessions/{session_id}/messages", {"content": "check later"}
    )
    assert status == 200, reply
    events = await history(api, session_id)
    created = next(e for e in events if e["type"] == "tool_result")
    assert created["content"].startswith("created one-shot schedule sch_")
    schedule_id = created["content"].split()[3]
    stored = tmp_path / "data" / "schedules" / f"{schedule_id}.yaml"
    assert f"session_id: {session_id}" in stored.read_text()

    async def answered() -> bool:
        return any(e.get("content") == "The build is green." for e in await history(api, session_id))

    await until(answered)
    task_message = [e for e in await history(api, session_id) if e["type"] == "user_message"][-1]
    assert task_message["content"].startswith(f"[scheduled task {schedule_id}] build\ncheck the build")

    async def completed() -> dict[str, Any] | None:
        _status, body = await api.call("GET", f"/api/v1/schedules/{schedule_id}")
        return body if body["schedule"]["status"] == "completed" else None

    shown = await until(completed)
    assert [run["status"] for run in shown["runs"]] == ["started", "ok"]
    assert shown["runs"][-1]["session_id"] == session_id

    def committed() -> bool:
        log = subprocess.run(
            ["git", "log", "--name-only", "--format=%s"],
            cwd=tmp_path / "data",
            capture_output=True,
            text=True,
        ).stdout
        return f"schedules/{schedule_id}.yaml" in log and "runs/" not in log

    async def git_has_it() -> bool:
        return committed()

    await until(git_has_it)


async def test_a_scheduled_task_may_not_create_more_schedules(api: Api, fake_llm: FakeLLMServer) -> None:
    session_id = await api.new_session()
    fake_llm.enqueue(
        tool_calls([("schedule", {"action": "create", "every": "1m", "message": "again"})]),
        text("refused, as expected"),
    )
    status, body = await api.call(
        "POST", "/api/v1/schedules", {"agent": "helper", "session_id": session_id, "in": "1s", "task": "loop"}
    )
    assert status == 201, body

    async def refused() -> dict[str, Any] | None:
        results = [e for e in await history(api, session_id) if e["type"] == "tool_result"]
        return results[0] if results else None

    result = await until(refused)
    assert result["payload"]["ok"] is False
    assert "may not create schedules" in result["content"]
    _status, listed = await api.call("GET", "/api/v1/schedules?all=true")
    assert [s["schedule"]["id"] for s in listed["schedules"]] == [body["schedule"]["id"]]


async def test_a_message_schedule_is_delivered_as_is_without_the_model(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    session_id = await api.new_session()
    status, body = await api.call(
        "POST",
        "/api/v1/schedules",
        {"agent": "helper", "session_id": session_id, "every": "1s", "message": "drink water"},
    )
    assert status == 201, body
    schedule_id = body["schedule"]["id"]
    assert body["timing"] == "every 1s"

    async def delivered_twice() -> bool:
        notes = [e for e in await history(api, session_id) if e["type"] == "notification"]
        return len(notes) >= 2

    await until(delivered_twice)
    assert fake_llm.requests == []
    status, paused = await api.call("POST", f"/api/v1/schedules/{schedule_id}/pause")
    assert (status, paused["schedule"]["status"], paused.get("next_run")) == (200, "paused", None)
    status, run = await api.call("POST", f"/api/v1/schedules/{schedule_id}/run")
    assert status == 200
    assert run["run"]["status"] == "ok"
    status, _ = await api.call("DELETE", f"/api/v1/schedules/{schedule_id}")
    assert status == 204
    status, gone = await api.call("GET", f"/api/v1/schedules/{schedule_id}")
    assert status == 404
    assert gone["detail"].startswith(f"no schedule '{schedule_id}'")


async def test_a_task_needing_approval_asks_in_its_session_and_runs_once_allowed(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    session_id = await api.new_session()
    fake_llm.enqueue(tool_calls([("bash", {"command": "ls /"})]), text("listed the root"))
    status, body = await api.call(
        "POST",
        "/api/v1/schedules",
        {"agent": "helper", "session_id": session_id, "in": "1s", "task": "list /"},
    )
    assert status == 201, body

    async def asking() -> list[dict[str, Any]]:
        _status, session = await api.call("GET", f"/api/v1/sessions/{session_id}")
        return list(session.get("pending_approvals") or [])

    pending = (await until(asking))[0]
    assert pending["tool"] == "bash"
    # The task waiting for a person holds no place (of the one there is): others still run.
    other_session = await api.new_session()
    status, reminder = await api.call(
        "POST",
        "/api/v1/schedules",
        {"agent": "helper", "session_id": other_session, "in": "1s", "message": "stretch"},
    )
    assert status == 201, reminder

    async def reminded() -> bool:
        return any(e["type"] == "notification" for e in await history(api, other_session))

    await until(reminded)
    status, done = await api.call(
        "POST",
        f"/api/v1/sessions/{session_id}/approve",
        {"call_id": pending["call_id"], "decision": "allow_once"},
    )
    assert status == 200, done

    async def recorded() -> list[dict[str, Any]] | None:
        _status, shown = await api.call("GET", f"/api/v1/schedules/{body['schedule']['id']}")
        runs = shown["runs"]
        return runs if runs and runs[-1]["status"] != "started" else None

    runs = await until(recorded)
    assert runs[-1]["status"] == "ok"


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        (
            {"agent": "helper", "every": "1h", "cron": "0 9 * * *", "message": "x"},
            "exactly one of at, every or cron",
        ),
        ({"agent": "helper", "cron": "61 * * * *", "message": "x"}, "invalid cron expression"),
        ({"agent": "helper", "in": "soon", "message": "x"}, "in"),
        ({"agent": "helper", "every": "1h", "mesage": "x"}, "mesage"),
    ],
)
async def test_bad_schedule_requests_are_problems_naming_the_field(
    api: Api, request_body: dict[str, Any], field: str
) -> None:
    status, problem = await api.call("POST", "/api/v1/schedules", request_body)
    assert status == 400
    assert field in str(problem)
    _status, listed = await api.call("GET", "/api/v1/schedules")
    assert listed == {"schedules": []}


async def test_a_schedule_for_an_unknown_agent_is_not_found(api: Api) -> None:
    status, problem = await api.call(
        "POST", "/api/v1/schedules", {"agent": "ghost", "every": "1h", "message": "x"}
    )
    assert status == 404
    assert "ghost" in problem["detail"]


async def test_listing_the_schedules_of_an_unknown_agent_is_not_found(api: Api) -> None:
    """A misspelt agent is not "no schedules", which reads as if they were all gone."""
    status, problem = await api.call("GET", "/api/v1/schedules?agent=helpr")
    assert status == 404
    assert "helpr" in problem["detail"]
    status, listed = await api.call("GET", "/api/v1/schedules?agent=helper")
    assert (status, listed) == (200, {"schedules": []})


async def test_a_schedule_names_the_missing_half_of_a_chat_and_an_unknown_session(api: Api) -> None:
    status, problem = await api.call(
        "POST", "/api/v1/schedules", {"agent": "helper", "every": "1h", "message": "x", "gateway": "telegram"}
    )
    assert status == 400
    assert problem["detail"] == "body.chat_id: gateway and chat_id go together: give both or neither"

    status, problem = await api.call(
        "POST",
        "/api/v1/schedules",
        {"agent": "helper", "every": "1h", "message": "x", "session_id": "s_NONE"},
    )
    assert status == 404
    assert "s_NONE" in problem["detail"]
    _status, listed = await api.call("GET", "/api/v1/schedules")
    assert listed == {"schedules": []}


async def test_a_schedule_of_an_agent_that_was_removed_is_paused_not_failed_every_slot(
    api: Api, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    agent_yaml = (tmp_path / "data" / "agents" / "helper" / "agent.yaml").read_text()
    deployed = agent_yaml.replace("name: helper", "name: courier")
    status, body = await api.call("PUT", "/api/admin/v1/agents/courier", {"files": {"agent.yaml": deployed}})
    assert status in (200, 201), body
    session_id = await api.new_session("courier")
    status, body = await api.call(
        "POST",
        "/api/v1/schedules",
        {"agent": "courier", "session_id": session_id, "every": "1s", "message": "drink water"},
    )
    assert status == 201, body
    schedule_id = body["schedule"]["id"]
    status, _ = await api.call("DELETE", "/api/admin/v1/agents/courier")
    assert status == 204
    status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/end")
    assert status == 200

    async def paused() -> dict[str, Any] | None:
        status, shown = await api.call("GET", f"/api/v1/schedules/{schedule_id}")
        assert status == 200, shown
        return shown if shown["schedule"]["status"] == "paused" else None

    shown = await until(paused)
    failed = [run for run in shown["runs"] if run["status"] == "error"]
    assert len(failed) == 1
    assert failed[0]["error"] == "agent 'courier' no longer exists"
    assert "status: paused" in (tmp_path / "data" / "schedules" / f"{schedule_id}.yaml").read_text()
