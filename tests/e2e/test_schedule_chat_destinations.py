"""POST /api/v1/schedules with `gateway` + `chat_id`: the gateway must be one the server runs.
A mistyped one used to be accepted, and each run "delivered" into a new session no chat follows."""

from __future__ import annotations

from duragent.testing.fake_llm import FakeLLMServer
from tests.e2e.server_harness import Api
from tests.e2e.test_schedules_api import api

__all__ = ["api"]  # the fixture (a server with no gateway plugins)


async def test_a_schedule_for_a_gateway_the_server_does_not_run_is_refused(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    body = {"agent": "helper", "gateway": "telegarm", "chat_id": "42", "every": "1h", "message": "hi"}
    status, problem = await api.call("POST", "/api/v1/schedules", body)

    assert status == 400, problem
    assert problem["detail"] == "body.gateway: no gateway 'telegarm' on this server (none is configured)"
    _status, listed = await api.call("GET", "/api/v1/schedules?all=true")
    assert listed["schedules"] == []
