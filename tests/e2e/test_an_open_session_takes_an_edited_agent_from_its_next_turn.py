"""A person edits an agent while a conversation with it stays open (a Telegram chat, a `chat`
left running): the conversation's next turn uses the edited prompt, not the one it was loaded
with, and a broken save leaves it on the last good version."""

from __future__ import annotations

from pathlib import Path

from duragent.server.state import STATE
from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import ApiFactory
from tests.waiting import until


async def test_an_open_sessions_next_turn_uses_the_edited_system_prompt(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api = await start_api(git=False)
    registry = api.server.app[STATE].agents
    agent_yaml = tmp_path / "ws0" / "data" / "agents" / "helper" / "agent.yaml"
    session_id = await api.new_session()
    path = f"/api/v1/sessions/{session_id}/messages"

    fake_llm.enqueue(text("first"))
    status, _ = await api.call("POST", path, {"content": "hello"})
    assert status == 200
    assert "You are a test agent." in fake_llm.requests[-1].messages[0]["content"]

    loaded = registry.cached("helper")
    agent_yaml.write_text(agent_yaml.read_text().replace("You are a test agent.", "You answer in haiku."))
    await until(lambda: registry.cached("helper") is not loaded, within=20)
    fake_llm.enqueue(text("second"))
    status, _ = await api.call("POST", path, {"content": "and now?"})
    assert status == 200
    system = fake_llm.requests[-1].messages[0]["content"]
    assert "You answer in haiku." in system
    assert "You are a test agent." not in system

    # a broken save: the session goes on with the last version that loaded
    agent_yaml.write_text(agent_yaml.read_text() + "  tools: [\n")
    await until(lambda: bool(registry.errors()), within=20)
    fake_llm.enqueue(text("third"))
    status, _ = await api.call("POST", path, {"content": "still there?"})
    assert status == 200
    assert "You answer in haiku." in fake_llm.requests[-1].messages[0]["content"]
