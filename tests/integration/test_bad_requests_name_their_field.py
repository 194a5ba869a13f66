"""A request the API refuses says which field is wrong (problem+json `errors[].field`), and
leaves nothing behind on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.server_harness import Api, ApiFactory


def _fields(body: dict[str, object]) -> list[object]:
    errors = body.get("errors")
    assert isinstance(errors, list), body
    return [error["field"] for error in errors]


def _session_folders(tmp_path: Path) -> list[str]:
    return sorted(path.name for path in (tmp_path / "ws0" / "data" / "sessions").glob("s_*"))


@pytest.mark.parametrize(
    ("literal", "field"),
    [
        ('{"agent": "helper", "metadata": {"ticket": NaN}}', "body.metadata.ticket"),
        ('{"agent": "helper", "metadata": {"n": [1, Infinity]}}', "body.metadata.n.1"),
        ('{"agent": "helper", "metadata": {"n": -Infinity}}', "body.metadata.n"),
    ],
)
async def test_nan_or_infinity_in_a_body_is_a_400_naming_the_field_and_makes_no_session(
    start_api: ApiFactory, tmp_path: Path, literal: str, field: str
) -> None:
    api: Api = await start_api(git=False)
    status, body = await api.call(
        "POST", "/api/v1/sessions", data=literal, headers={"Content-Type": "application/json"}
    )
    assert status == 400, body
    assert _fields(body) == [field]
    assert "not a JSON number" in body["errors"][0]["message"]
    assert _session_folders(tmp_path) == []


async def test_the_word_nan_inside_a_string_is_plain_text(start_api: ApiFactory) -> None:
    api: Api = await start_api(git=False)
    status, body = await api.call(
        "POST", "/api/v1/sessions", {"agent": "helper", "metadata": {"note": "NaN and Infinity"}}
    )
    assert status == 201, body
    assert body["metadata"] == {"note": "NaN and Infinity"}


async def test_a_body_that_is_not_json_names_the_body(start_api: ApiFactory) -> None:
    api: Api = await start_api(git=False)
    for raw in (b'{"agent": ', b'{"agent": "\xff"}'):
        status, body = await api.call(
            "POST", "/api/v1/sessions", data=raw, headers={"Content-Type": "application/json"}
        )
        assert status == 400, body
        assert _fields(body) == ["body"]


async def test_an_agent_name_that_could_leave_its_folder_is_a_400_naming_the_field(
    start_api: ApiFactory, tmp_path: Path
) -> None:
    api: Api = await start_api(git=False)
    status, body = await api.call("POST", "/api/v1/sessions", {"agent": "../helper"})
    assert status == 400, body
    assert _fields(body) == ["body.agent"]
    assert body["errors"][0]["message"].startswith("invalid agent name '../helper'")
    assert _session_folders(tmp_path) == []

    files = {"agent.yaml": "name: x\nmodel:\n  provider: openai\n  name: m\n"}
    for name in ("a/b", "world"):
        status, body = await api.call("POST", "/api/admin/v1/agents", {"name": name, "files": files})
        assert status == 400, body
        assert _fields(body) == ["body.name"]


async def test_a_bad_cursor_or_event_position_names_its_parameter(start_api: ApiFactory) -> None:
    api: Api = await start_api(git=False)
    session_id = await api.new_session()
    status, body = await api.call("GET", "/api/v1/sessions?cursor=not-a-cursor")
    assert status == 400, body
    assert _fields(body) == ["query.cursor"]

    status, body = await api.call("GET", f"/api/v1/sessions/{session_id}/events?after=abc")
    assert status == 400, body
    assert _fields(body) == ["query.after"]

    events = f"/api/v1/sessions/{session_id}/events"
    status, body = await api.call("GET", events, headers={"Last-Event-ID": "../1"})
    assert status == 400, body
    assert _fields(body) == ["header.Last-Event-ID"]


async def test_approving_another_call_than_the_waiting_one_names_call_id(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api: Api = await start_api(git=False)
    fake_llm.enqueue(tool_calls([("bash", {"command": "ls /"})]), text("listed"))
    session_id = await api.new_session()
    status, pending = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "ls"})
    assert (status, pending["status"]) == (202, "pending_approval"), pending
    status, body = await api.call(
        "POST", f"/api/v1/sessions/{session_id}/approve", {"call_id": "not-it", "decision": "deny"}
    )
    assert status == 400, body
    assert _fields(body) == ["body.call_id"]
    assert body["errors"][0]["message"] == f"call_id mismatch: expected {pending['call_id']}"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/schedules?agnet=helper", "query.agnet"),
        ("/api/admin/v1/processes?runing=true", "query.runing"),
        ("/api/admin/v1/processes/p_1?ofset=0", "query.ofset"),
        ("/api/admin/v1/mcp?agnet=helper", "query.agnet"),
        ("/api/admin/v1/mcp?agent=../helper", "query.agent"),
    ],
)
async def test_a_mistyped_query_parameter_is_refused_not_ignored(
    start_api: ApiFactory, path: str, field: str
) -> None:
    api: Api = await start_api(git=False)
    status, body = await api.call("GET", path)
    assert status == 400, body
    assert _fields(body) == [field]
    if path.endswith("runing=true"):
        assert body["errors"][0]["message"].endswith("(did you mean 'running'?)")


async def test_a_mistyped_body_field_is_refused_with_the_nearest_one(start_api: ApiFactory) -> None:
    api: Api = await start_api(git=False)
    session_id = await api.new_session()

    status, body = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"contnet": "hi"})

    assert status == 400, body
    assert "body.contnet" in _fields(body)
    [mistyped] = [error for error in body["errors"] if error["field"] == "body.contnet"]
    assert mistyped["message"].endswith("(did you mean 'content'?)")


async def test_an_inline_agent_spec_is_refused_at_the_fields_the_client_sent(
    start_api: ApiFactory, tmp_path: Path
) -> None:
    api: Api = await start_api(git=False)
    spec = {"apiVersion": "duragent/v1alpha1", "kind": "Agent", "spec": {"model": {"provider": "nope"}}}
    status, problem = await api.call("POST", "/api/v1/sessions", {"agent": "billing", "agent_spec": spec})
    assert status == 422, problem
    assert set(_fields(problem)) == {"body.agent_spec"}
    assert any(error["message"].startswith("spec.model.provider") for error in problem["errors"])

    body = {"agent": "billing", "agent_spec": spec, "prompts": {"../SYSTEM_PROMPT.md": "hi"}}
    status, problem = await api.call("POST", "/api/v1/sessions", body)
    assert status == 422, problem
    assert _fields(problem) == ["body.prompts.../SYSTEM_PROMPT.md"]

    body = {"agent": "billing", "agent_spec": {**spec, "metadata": "billing"}}
    status, problem = await api.call("POST", "/api/v1/sessions", body)
    assert status == 422, problem
    assert _fields(problem) == ["body.agent_spec.metadata"]

    # an agent.yaml among the prompts would take the place of agent_spec without a word
    body = {"agent": "billing", "agent_spec": spec, "prompts": {"agent.yaml": "name: billing\n"}}
    status, problem = await api.call("POST", "/api/v1/sessions", body)
    assert status == 422, problem
    assert _fields(problem) == ["body.prompts.agent.yaml"]
    assert _session_folders(tmp_path) == []


@pytest.mark.parametrize("name", ["..%2F..%2Fetc%2Fpasswd", "reports/..%2Fsecret", "a%00b", ".hidden"])
async def test_downloading_an_artifact_name_that_breaks_the_rules_is_a_400(
    start_api: ApiFactory, name: str
) -> None:
    api: Api = await start_api(git=False)
    session_id = await api.new_session()
    status, body = await api.call("GET", f"/api/v1/sessions/{session_id}/artifacts/{name}")
    assert status == 400, body
    assert body["detail"].startswith("invalid artifact name")


async def test_the_detail_of_an_invalid_body_names_the_first_field_for_clients_that_show_only_it(
    start_api: ApiFactory,
) -> None:
    api: Api = await start_api(git=False)
    status, body = await api.call("POST", "/api/v1/sessions", {"agnet": "helper"})
    assert status == 400, body
    assert body["detail"] == "the request is invalid: body.agent: Field required (and 1 more)"
    status, body = await api.call("GET", "/api/v1/sessions?limit=0")
    assert (
        body["detail"]
        == "the query string is invalid: query.limit: Input should be greater than or equal to 1"
    )


async def test_nan_in_a_utf16_body_is_refused_too(start_api: ApiFactory) -> None:
    api: Api = await start_api(git=False)
    raw = '{"agent": "helper", "metadata": {"ticket": NaN}}'.encode("utf-16")
    status, body = await api.call(
        "POST", "/api/v1/sessions", data=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 400, body
    assert _fields(body) == ["body.metadata.ticket"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"agent": "../helper", "every": "1h", "message": "x"}, "body.agent"),
        ({"agent": "helper", "every": "1h", "message": "x", "session_id": "../s"}, "body.session_id"),
        ({"agent": "helper", "every": "1h", "message": "x", "gateway": "g"}, "body.chat_id"),
        ({"agent": "helper", "every": "1h", "message": "x", "gateway": "g", "chat_id": "1"}, "body.gateway"),
        ({"agent": "helper", "cron": "99 * * * *", "message": "x"}, "body.cron"),
        ({"agent": "helper", "every": "1h"}, "body"),
    ],
)
async def test_a_schedule_the_api_refuses_names_the_field(
    start_api: ApiFactory, body: dict[str, str], field: str
) -> None:
    api: Api = await start_api(git=False)
    status, problem = await api.call("POST", "/api/v1/schedules", body)
    assert status == 400, problem
    assert _fields(problem) == [field]


async def test_approving_in_an_ended_session_is_a_409_saying_it_ended(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api: Api = await start_api(git=False)
    fake_llm.enqueue(tool_calls([("bash", {"command": "ls /"})]), text("listed"))
    session_id = await api.new_session()
    status, pending = await api.call("POST", f"/api/v1/sessions/{session_id}/messages", {"content": "ls"})
    assert (status, pending["status"]) == (202, "pending_approval"), pending
    status, _ = await api.call("POST", f"/api/v1/sessions/{session_id}/end")
    assert status == 200
    status, body = await api.call(
        "POST", f"/api/v1/sessions/{session_id}/approve", {"call_id": pending["call_id"], "decision": "deny"}
    )
    assert status == 409, body
    assert "has ended" in body["detail"]
