"""A person edits an agent while a conversation with it stays open (a Telegram chat, a `chat`
left running): the conversation's next turn uses the edited prompt, not the one it was loaded
with, and a broken save leaves it on the last good version."""

from __future__ import annotations

from pathlib import Path

import pytest

from duragent.agents import registry as agent_registry
from duragent.agents.registry import AgentRegistry
from duragent.server.state import STATE
from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import Api, ApiFactory
from tests.waiting import until


async def a_conversation(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> tuple[Api, AgentRegistry, Path, str]:
    """A server, and a session of its agent `helper` that has had one turn: (the API, the
    server's agent registry, helper's agent.yaml, the session's messages path)."""
    api = await start_api(git=False)
    agent_yaml = tmp_path / "ws0" / "data" / "agents" / "helper" / "agent.yaml"
    path = f"/api/v1/sessions/{await api.new_session()}/messages"
    fake_llm.enqueue(text("first"))
    status, _ = await api.call("POST", path, {"content": "hello"})
    assert status == 200
    assert "You are a test agent." in fake_llm.requests[-1].messages[0]["content"]
    return api, api.server.app[STATE].agents, agent_yaml, path


async def test_an_open_sessions_next_turn_uses_the_edited_system_prompt(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    api, registry, agent_yaml, path = await a_conversation(start_api, fake_llm, tmp_path)

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


async def test_a_message_sent_right_after_a_save_meets_the_edited_agent(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sed -i ... agent.yaml && duragent send ...`: the save is not yet through the watcher's quiet
    time (made a minute long here) when the message comes; its turn reads the edit first."""
    monkeypatch.setattr(agent_registry, "WATCH_DEBOUNCE_SECONDS", 60.0)
    api, registry, agent_yaml, path = await a_conversation(start_api, fake_llm, tmp_path)

    agent_yaml.write_text(agent_yaml.read_text().replace("You are a test agent.", "You answer in haiku."))
    await until(lambda: "helper" in registry._timers)  # the watcher has seen the save, not read it
    fake_llm.enqueue(text("second"))
    status, _ = await api.call("POST", path, {"content": "and now?"})

    assert status == 200
    assert "You answer in haiku." in fake_llm.requests[-1].messages[0]["content"]
    assert not registry._timers  # read once: the quiet time's reload is not made again
