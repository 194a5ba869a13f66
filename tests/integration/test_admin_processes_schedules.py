"""Operators' view of background work through the real server: every process and schedule, broken files."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from duragent.processes.manager import SpawnRequest
from duragent.server.state import STATE
from duragent.sessions.log import SessionLog
from tests.integration.test_admin_api import make_app
from tests.waiting import until

ADMIN = "/api/admin/v1"
ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, duragent_client: ClientFactory) -> Client:
    monkeypatch.chdir(tmp_path)
    return await duragent_client(make_app(tmp_path))


async def spawn(client: Client, tmp_path: Path, command: str) -> str:
    processes = client.server.app[STATE].processes
    assert processes is not None
    work = tmp_path / ".duragent" / "work" / "assistant"
    work.mkdir(parents=True, exist_ok=True)
    request = SpawnRequest(
        agent="assistant",
        session_id="s_NONE",
        command=command,
        work_root=work,
        env={"PATH": os.environ["PATH"], "SECRET_TOKEN": "x"},
    )
    return (await processes.spawn(request)).handle


async def test_an_operator_lists_reads_and_kills_an_agents_process(client: Client, tmp_path: Path) -> None:
    handle = await spawn(client, tmp_path, "echo warming up; sleep 60")
    response = await client.get(f"{ADMIN}/processes?running=true")
    assert response.status == 200
    [listed] = (await response.json())["processes"]
    assert (listed["process"]["handle"], listed["process"]["status"]) == (handle, "running")
    processes = client.server.app[STATE].processes
    assert processes is not None
    for _ in range(200):
        response = await client.get(f"{ADMIN}/processes/{handle}")
        body = await response.json()
        if "warming up" in body["output"]["text"]:
            break
    assert body["output"]["text"] == "warming up\n"
    killed = await client.post(f"{ADMIN}/processes/{handle}/kill")
    assert killed.status == 200
    assert (await killed.json())["process"]["status"] == "killed"
    assert (await killed.json())["process"]["reason"] == "killed by an operator"
    again = await client.post(f"{ADMIN}/processes/{handle}/kill")
    assert again.status == 400
    assert "not running" in (await again.json())["detail"]
    assert (await client.get(f"{ADMIN}/processes?running=true")).status == 200
    assert (await (await client.get(f"{ADMIN}/processes?running=true")).json())["processes"] == []


async def test_an_unknown_process_is_a_404_and_the_api_token_is_not_enough(client: Client) -> None:
    missing = await client.get(f"{ADMIN}/processes/proc_NOPE")
    assert missing.status == 404
    assert "no background process" in (await missing.json())["detail"]
    refused = await client.get(
        f"{ADMIN}/processes", headers={"X-Duragent-Admin-Token": "", "Authorization": "Bearer wrong"}
    )
    assert refused.status in (401, 403)


async def test_an_operator_sees_every_schedule_with_its_last_run_and_the_broken_files(
    client: Client, tmp_path: Path
) -> None:
    made = await client.post(
        "/api/v1/schedules", json={"agent": "assistant", "every": "1h", "message": "stretch"}
    )
    assert made.status == 201, await made.text()
    schedule_id = (await made.json())["schedule"]["id"]
    ran = await client.post(f"/api/v1/schedules/{schedule_id}/run")
    assert ran.status == 200, await ran.text()
    broken = tmp_path / ".duragent" / "schedules" / "sch_BROKEN.yaml"
    broken.write_text("id: sch_BROKEN\nagent: assistant\nevery: often\nmessage: hi\n")
    response = await client.get(f"{ADMIN}/schedules")
    assert response.status == 200
    body = await response.json()
    [row] = body["schedules"]
    assert row["schedule"]["id"] == schedule_id
    assert row["next_run"] is not None
    assert row["last_run"]["status"] == "ok"
    assert any("sch_BROKEN.yaml:3:8: every: expected a duration" in p for p in body["problems"])


async def test_a_schedule_made_over_http_can_follow_a_running_process(client: Client, tmp_path: Path) -> None:
    handle = await spawn(client, tmp_path, "sleep 60")
    body = {"agent": "assistant", "every": "10m", "message": "still building?", "until_process": handle}
    made = await client.post("/api/v1/schedules", json=body)
    assert made.status == 201, await made.text()
    schedule_id = (await made.json())["schedule"]["id"]
    assert (await client.post(f"{ADMIN}/processes/{handle}/kill")).status == 200
    scheduler = client.server.app[STATE].schedules
    assert scheduler is not None
    await until(lambda: scheduler.schedules[schedule_id].status == "cancelled")
    again = await client.post("/api/v1/schedules", json=body)
    assert again.status == 400
    refused = await again.json()
    assert "has already ended" in refused["detail"]
    assert [error["field"] for error in refused["errors"]] == ["body.until_process"]
    unknown = await client.post("/api/v1/schedules", json={**body, "until_process": "proc_NOPE"})
    assert unknown.status == 404
    # the field, and no hint meant for the agent's tool ("see action list")
    missing = await unknown.json()
    assert missing["detail"] == "body.until_process: no background process 'proc_NOPE' of agent assistant"
    assert [error["field"] for error in missing["errors"]] == ["body.until_process"]


async def test_an_operator_sees_a_schedule_aimed_at_another_agents_session_among_the_problems(
    client: Client, tmp_path: Path
) -> None:
    stores = client.server.app[STATE].workspace.stores
    theirs = (await SessionLog.create(stores.sessions, agent="other")).session_id
    (tmp_path / ".duragent" / "schedules").mkdir(parents=True, exist_ok=True)
    (tmp_path / ".duragent" / "schedules" / "sch_ELSEWHERE.yaml").write_text(
        "id: sch_ELSEWHERE\nagent: assistant\ncreated_at: '2026-12-06T06:46:57Z'\nevery: 1h\n"
        f"message: stretch\ndestination:\n  session_id: {theirs}\n"
    )

    response = await client.get(f"{ADMIN}/schedules")

    assert response.status == 200
    body = await response.json()
    assert any(
        f"sch_ELSEWHERE.yaml:7:15: destination.session_id: session {theirs} is agent other's" in p
        for p in body["problems"]
    ), body["problems"]
