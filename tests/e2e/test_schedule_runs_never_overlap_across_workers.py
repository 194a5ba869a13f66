"""Two real `duragent serve` workers sharing PostgreSQL: a recurring task whose run goes on (the
model has not answered yet) is not started again by the other worker; the next run starts once
this one has ended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from duragent.scheduling.store import parse_time
from duragent.testing.fake_llm import FakeLLMServer, delay, text
from duragent.testing.postgres import temporary_schema
from tests.e2e.server_harness import ServeProcess, start_serve, write_workspace
from tests.waiting import eventually

pytest_plugins = ["duragent.testing.pytest_plugin"]

API_TOKEN = "api-token-for-workers"
HEADERS = {"Authorization": f"Bearer {API_TOKEN}"}
#: How long the model takes over the first run's reply: several slots of an `every: 1s` schedule.
HELD = 4.0


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with temporary_schema() as url:
        yield url


async def start_worker(root: Path, llm_url: str, pg_url: str, name: str) -> ServeProcess:
    config = write_workspace(root / name, llm_url, git=False, api_token=API_TOKEN)
    with config.open("a") as file:
        file.write(f"services:\n  session:\n    backend: postgres\n    url: {pg_url}\n")
        file.write("scheduling:\n  poll_interval: 1s\n")  # (B sees the schedule A made at once)
    return await asyncio.to_thread(start_serve, config, root / f"{name}.log")


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    async with http.request(method, url, json=body) as response:
        assert response.status < 300, await response.text()
        return await response.json(content_type=None)


@pytest.mark.slow
async def test_a_run_going_on_in_one_worker_is_not_started_beside_it_by_the_other(
    tmp_path: Path, fake_llm: FakeLLMServer, pg_url: str
) -> None:
    fake_llm.enqueue(delay(HELD, text("first report")))
    a = await start_worker(tmp_path, fake_llm.url, pg_url, "a")
    b = await start_worker(tmp_path, fake_llm.url, pg_url, "b")
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            session = await call(http, "POST", f"{a.url}/api/v1/sessions", {"agent": "helper"})
            made = await call(
                http,
                "POST",
                f"{a.url}/api/v1/schedules",
                {"agent": "helper", "session_id": session["session_id"], "every": "1s", "task": "report"},
            )
            schedule_id = made["schedule"]["id"]

            async def two_runs_over() -> list[dict[str, Any]] | None:
                shown = await call(http, "GET", f"{b.url}/api/v1/schedules/{schedule_id}")
                runs: list[dict[str, Any]] = shown["runs"]
                return runs if sum(r["status"] != "started" for r in runs) >= 2 else None

            runs = await eventually(two_runs_over, within=60)
            await call(http, "POST", f"{a.url}/api/v1/schedules/{schedule_id}/pause")
    finally:
        a.terminate()
        b.terminate()

    claims = [r for r in runs if r["status"] == "started"]
    ended = {r["slot"]: parse_time(r["ts"]) for r in runs if r["status"] != "started"}
    first, second = claims[0], claims[1]
    # the second run was claimed only once the first (held by the model) had ended
    assert first["slot"] in ended
    assert parse_time(second["ts"]) >= ended[first["slot"]], (runs, a.log(), b.log())
    assert len(fake_llm.requests) >= 2
