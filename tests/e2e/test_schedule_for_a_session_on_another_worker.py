"""A schedule made through one worker for a session whose turn runs on another: made at once,
without taking the session over (it used to wait 3 s and answer 409 "running a turn on another
worker", or take an idle session away from its owner just to read which agent it is)."""

from __future__ import annotations

import aiohttp
import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import ServeProcess
from tests.e2e.test_workers_failover import (  # noqa: F401  (fixtures)
    API_HEADERS,
    SLOW_REPLY,
    call,
    first_turn_running_on,
    pg_url,
    two_workers,
)

pytestmark = pytest.mark.slow


async def test_a_schedule_for_a_session_running_on_another_worker_is_made_and_leaves_it_there(
    two_workers: tuple[ServeProcess, ServeProcess],  # noqa: F811
    fake_llm: FakeLLMServer,
) -> None:
    fake_llm.enqueue(text(SLOW_REPLY, chunks=40, chunk_delay=0.15))
    a, b = two_workers
    async with aiohttp.ClientSession(headers=API_HEADERS) as http:
        session, first = await first_turn_running_on(a, http, fake_llm, "helper")
        session_id = session.rsplit("/", 1)[-1]

        status, made = await call(
            http,
            "POST",
            f"{b.url}/api/v1/schedules",
            {"agent": "helper", "every": "1h", "message": "stand-up", "session_id": session_id},
        )
        assert status == 201, made
        assert made["schedule"]["destination"] == {"session_id": session_id}
        assert not first.done()  # still A's turn, on A

        status, wrong_agent = await call(
            http,
            "POST",
            f"{b.url}/api/v1/schedules",
            {"agent": "pauser", "every": "1h", "message": "x", "session_id": session_id},
        )
        assert status == 400, wrong_agent
        assert f"session {session_id} is agent helper's" in wrong_agent["detail"]
        status, unknown = await call(
            http,
            "POST",
            f"{b.url}/api/v1/schedules",
            {"agent": "helper", "every": "1h", "message": "x", "session_id": "s_01M96G25QJ9Z7KSXZYFBHVNP0X"},
        )
        assert status == 404, unknown

        status, reply = await first
        assert (status, reply["content"]) == (200, SLOW_REPLY)
        status, shown = await call(http, "GET", f"{a.url}{session}")
        assert shown["loaded"] is True  # A kept the session throughout
