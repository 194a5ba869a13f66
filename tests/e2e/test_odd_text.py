"""Text Python can hold but UTF-8 cannot (lone surrogates) at the HTTP and model boundaries."""

from __future__ import annotations

import json
from pathlib import Path

from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import Api

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

LONE_SURROGATE = "\\ud800"  # as JSON writes it: valid JSON, no valid UTF-8


def session_folders(tmp_path: Path) -> list[str]:
    sessions = tmp_path / "ws0" / "data" / "sessions"
    return sorted(path.name for path in sessions.iterdir()) if sessions.is_dir() else []


async def test_a_lone_surrogate_in_session_metadata_is_a_400_naming_the_field_and_no_session(
    api: Api, tmp_path: Path
) -> None:
    body = '{"agent": "helper", "metadata": {"note": "a' + LONE_SURROGATE + 'b"}}'
    status, problem = await api.call(
        "POST", "/api/v1/sessions", data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 400, problem
    assert [error["field"] for error in problem["errors"]] == ["body.metadata.note"]
    assert "surrogate" in problem["errors"][0]["message"]
    assert session_folders(tmp_path) == []
    status, listing = await api.call("GET", "/api/v1/sessions")
    assert listing["sessions"] == []


async def test_a_lone_surrogate_in_a_message_is_a_400_and_the_session_keeps_working(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    session_id = await api.new_session()
    body = '{"content": "hi ' + LONE_SURROGATE + '"}'
    status, problem = await api.call(
        "POST",
        f"/api/v1/sessions/{session_id}/messages",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400, problem
    assert problem["errors"][0]["field"] == "body.content"
    fake_llm.enqueue(text("fine"))
    status, reply = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "hi"})
    assert status == 200, reply
    assert reply["content"] == "fine"


async def test_a_model_reply_with_a_lone_surrogate_is_stored_with_a_replacement_character(
    api: Api, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    fake_llm.enqueue(text("broken \ud800 emoji and a whole one \U0001f600", chunks=3))
    session_id = await api.new_session()
    status, reply = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "hi"})
    assert status == 200, reply
    assert reply["content"] == "broken \ufffd emoji and a whole one \U0001f600"
    status, history = await api.call("GET", f"/api/v1/sessions/{session_id}/messages")
    assert history["messages"][-1]["content"] == reply["content"]
    events = (tmp_path / "ws0" / "data" / "sessions" / session_id / "events.jsonl").read_bytes()
    for line in events.splitlines():
        json.loads(line.decode("utf-8"))  # every line is valid UTF-8 JSON
