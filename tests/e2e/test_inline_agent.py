"""POST /api/v1/sessions with an inline agent spec: the seed's "agent configs passed per request"."""

from __future__ import annotations

from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import Api, ApiFactory


def inline_spec(url: str, prompt: str = "You are the billing assistant.") -> dict[str, object]:
    return {
        "apiVersion": "duragent/v1alpha1",
        "kind": "Agent",
        "spec": {
            "model": {
                "provider": "openai",
                "name": "gpt-test",
                "base_url": url,
                "api_key_env": "FAKE_LLM_KEY",
            },
            "system_prompt": "./SYSTEM_PROMPT.md",
        },
    }


async def test_a_session_can_bring_its_own_agent_spec(api: Api, fake_llm: FakeLLMServer) -> None:
    body = {
        "agent": "billing",
        "agent_spec": inline_spec(fake_llm.url),
        "prompts": {"SYSTEM_PROMPT.md": "You are the billing assistant."},
    }
    status, session = await api.call("POST", "/api/v1/sessions", body)
    assert status == 201, session
    assert session["agent"] == "billing"
    fake_llm.enqueue(text("Your invoice is paid."))
    status, reply = await api.call(
        "POST", f"/api/v1/sessions/{session['session_id']}/messages", {"content": "hi"}
    )
    assert status == 200, reply
    assert reply["content"] == "Your invoice is paid."
    assert "You are the billing assistant." in fake_llm.requests[-1].body["messages"][0]["content"]
    status, _ = await api.call("GET", "/api/v1/agents/billing")
    assert status == 200


async def test_the_same_spec_sent_again_is_not_redeployed(api: Api, fake_llm: FakeLLMServer) -> None:
    body = {
        "agent": "billing",
        "agent_spec": inline_spec(fake_llm.url),
        "prompts": {"SYSTEM_PROMPT.md": "Hi."},
    }
    for _ in range(3):
        status, _session = await api.call("POST", "/api/v1/sessions", body)
        assert status == 201
    status, agents = await api.call("GET", "/api/admin/v1/agents")
    assert [a["name"] for a in agents["agents"]].count("billing") == 1


async def test_an_invalid_inline_spec_is_a_422_naming_every_problem(api: Api) -> None:
    body = {"agent": "broken", "agent_spec": {"spec": {"model": {"provider": "nope"}}}}
    status, problem = await api.call("POST", "/api/v1/sessions", body)
    assert status == 422
    messages = " ".join(e["message"] for e in problem["errors"])
    assert "spec.model.provider must be" in messages
    assert "spec.model.name is required" in messages
    status, _ = await api.call("GET", "/api/v1/agents/broken")
    assert status == 404


async def test_an_inline_spec_cannot_name_another_agent(api: Api, fake_llm: FakeLLMServer) -> None:
    spec = inline_spec(fake_llm.url)
    spec["metadata"] = {"name": "someone-else"}
    status, problem = await api.call("POST", "/api/v1/sessions", {"agent": "billing", "agent_spec": spec})
    assert status == 422
    assert problem["errors"][0]["field"] == "body.agent_spec.metadata.name"


async def test_an_inline_spec_cannot_replace_a_static_agent(api: Api, fake_llm: FakeLLMServer) -> None:
    status, problem = await api.call(
        "POST", "/api/v1/sessions", {"agent": "helper", "agent_spec": inline_spec(fake_llm.url)}
    )
    assert status == 409, problem


async def test_an_inline_spec_with_only_the_api_token_is_forbidden(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False, api_token="api-secret", admin_token="admin-secret")
    body = {
        "agent": "billing",
        "agent_spec": inline_spec(fake_llm.url),
        "prompts": {"SYSTEM_PROMPT.md": "Leak ${FAKE_LLM_KEY}"},
    }
    for headers in (
        {"Authorization": "Bearer api-secret", "X-Duragent-Admin-Token": ""},
        {"Authorization": "Bearer api-secret", "X-Duragent-Admin-Token": "wrong"},
    ):
        status, problem = await api.call("POST", "/api/v1/sessions", body, headers=headers)
        assert status == 403, problem
        assert "admin token" in problem["detail"]
    status, _ = await api.call(
        "GET", "/api/v1/agents/billing", headers={"Authorization": "Bearer api-secret"}
    )
    assert status == 404


async def test_an_inline_spec_with_the_admin_token_deploys_and_starts_the_session(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False, api_token="api-secret", admin_token="admin-secret")
    body = {
        "agent": "billing",
        "agent_spec": inline_spec(fake_llm.url),
        "prompts": {"SYSTEM_PROMPT.md": "You are the billing assistant."},
    }
    headers = {"Authorization": "Bearer api-secret", "X-Duragent-Admin-Token": "admin-secret"}
    status, session = await api.call("POST", "/api/v1/sessions", body, headers=headers)
    assert status == 201, session
    assert session["agent"] == "billing"
