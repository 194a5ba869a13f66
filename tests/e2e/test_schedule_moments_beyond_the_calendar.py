"""A one-shot's `at` that has no UTC form (year 1 ahead of UTC, 9999-12-31 behind it) is refused
as a bad field, by HTTP, by the tool and on the command line, not a 500 or a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from duragent.cli import build_app
from duragent.errors import UsageError
from duragent.scaffold import init_workspace
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import Api
from tests.e2e.test_schedules_api import api, history

__all__ = ["api"]  # the fixtures

BEYOND = ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59.500Z"]


@pytest.mark.parametrize("moment", BEYOND)
async def test_an_at_beyond_the_calendar_is_a_bad_request_naming_at(api: Api, moment: str) -> None:
    session_id = await api.new_session()
    body = {"agent": "helper", "session_id": session_id, "at": moment, "message": "hi"}
    status, problem = await api.call("POST", "/api/v1/schedules", body)
    assert status == 400, problem
    assert problem["detail"].startswith("at: ")
    assert "out of range" in problem["detail"]
    _status, listed = await api.call("GET", "/api/v1/schedules?all=true")
    assert listed["schedules"] == []


async def test_the_tool_refuses_an_at_beyond_the_calendar_in_words(api: Api, fake_llm: FakeLLMServer) -> None:
    session_id = await api.new_session()
    fake_llm.enqueue(
        tool_calls([("schedule", {"action": "create", "at": BEYOND[0], "message": "hi"})]), text("ok")
    )
    status, reply = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "go"})
    assert status == 200, reply
    [result] = [e for e in await history(api, session_id) if e["type"] == "tool_result"]
    assert result["content"].startswith("schedule not created: at: 9999-12-31T23:59:59-05:00 is out of range")


def test_the_command_line_refuses_an_at_beyond_the_calendar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    args = ["schedule", "add", "--agent", "assistant", "--at", BEYOND[0], "--message", "x"]
    result = CliRunner().invoke(build_app(), args)
    assert isinstance(result.exception, UsageError), result.output
    assert str(result.exception).startswith("--at: 9999-12-31T23:59:59-05:00 is out of range")
