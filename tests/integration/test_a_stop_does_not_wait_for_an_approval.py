"""A stop pauses a turn that only waits for a person's answer at once, instead of waiting out its
grace: nothing runs in such a turn. The question is stored and asked again at the next start, and
an answer given while the server stops is refused in words, never dropped.

Each start is a new store and manager over the same session folder, as `duragent serve` builds
them; the model is a real HTTP server and the tool a real bash command.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from duragent.agents.loader import Agent
from duragent.config import DuragentConfig
from duragent.runtime.loop import Runtime
from duragent.runtime.providers import ProviderPool
from duragent.sessions.live import ServerClosing
from duragent.sessions.manager import SessionManager
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer, held, text, tool_calls
from tests.integration.turn_setup import agent_in
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin"]

AGENT_YAML = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: helper
spec:
  model:
    provider: openai
    name: gpt-test
    base_url: {url}
  system_prompt: test
  access:
    dm:
      allowlist: ["42"]
    debounce: 0s
  tools:
    builtin: [bash]
    policy:
      mode: ask
"""
#: Longer than any of these tests may take: a stop that waits for its grace fails them.
GRACE = 60.0

ManagerFactory = Callable[[], SessionManager]


@pytest.fixture
def agent(tmp_path: Path, fake_llm: FakeLLMServer) -> Agent:
    return agent_in(tmp_path, AGENT_YAML.format(url=fake_llm.url))


@pytest.fixture
async def start_server(tmp_path: Path, agent: Agent) -> AsyncIterator[ManagerFactory]:
    """Each call is a server start: a new store and manager over `<tmp>/sessions`."""
    made: list[tuple[SessionManager, FilesystemSessionStore, ProviderPool]] = []

    def make() -> SessionManager:
        store = FilesystemSessionStore(tmp_path / "sessions", fsync="never")
        providers = ProviderPool({"OPENAI_API_KEY": "sk-test"})
        config = DuragentConfig.model_validate({"session": {"on_disconnect": "continue"}})
        manager = SessionManager(store, Runtime(provider_for=providers.for_agent), config, lambda name: agent)
        made.append((manager, store, providers))
        return manager

    yield make
    for manager, store, providers in made:
        await manager.close(grace=0)
        await store.close()
        await providers.close()


async def test_a_stop_pauses_a_turn_waiting_for_an_approval_at_once_and_asks_again_after(
    start_server: ManagerFactory, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo approved"})]), text("done"))
    manager = start_server()
    live = await manager.create("helper")
    await live.submit("run it")
    await until(lambda: manager.runtime.approvals.pending(live.session_id))

    await asyncio.wait_for(manager.close(grace=GRACE), 10)

    assert (live.status, live.busy) == ("paused", False)
    assert [a["command"] for a in live.log.state.pending_approvals] == ["echo approved"]
    restarted = start_server()
    report = await restarted.recover()
    assert report.resumed == (live.session_id,)
    await until(lambda: restarted.runtime.approvals.pending(live.session_id))
    resumed = restarted.live[live.session_id]
    (asked,) = restarted.runtime.approvals.pending(live.session_id)
    resumed.decide(asked.call_id, "allow_once")
    await asyncio.wait_for(resumed.turn_finished.wait(), 10)
    results = [m for m in resumed.log.state.conversation if m.get("role") == "tool"]
    assert "approved" in results[-1]["content"]
    assert resumed.log.state.conversation[-1]["content"] == "done"


async def test_an_answer_given_while_the_server_stops_is_refused_in_words(
    start_server: ManagerFactory, fake_llm: FakeLLMServer
) -> None:
    manager = start_server()
    asking = await manager.create("helper")
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo approved"})]))
    await asking.submit("run it")
    await until(lambda: manager.runtime.approvals.pending(asking.session_id))
    (asked,) = manager.runtime.approvals.pending(asking.session_id)
    # Another session's turn waits for the model: the stop lasts until its reply is in.
    reply = threading.Event()
    fake_llm.enqueue(held(reply, text("slow")))
    working = await manager.create("helper")
    await working.submit("think")
    await until(lambda: len(fake_llm.requests) == 2)

    stopping = asyncio.create_task(manager.close(grace=GRACE))
    await until(lambda: not asking.busy)
    with pytest.raises(ServerClosing, match=r"stopping.*not applied.*asked again"):
        asking.decide(asked.call_id, "allow_once")
    reply.set()
    await asyncio.wait_for(stopping, 10)
    assert [a["call_id"] for a in asking.log.state.pending_approvals] == [asked.call_id]


async def test_a_chat_button_pressed_while_the_server_stops_says_the_answer_was_not_applied(
    start_server: ManagerFactory, fake_llm: FakeLLMServer, agent: Agent, tmp_path: Path
) -> None:
    from duragent.config import RouteConfig
    from duragent.gateways.protocol import (
        AnswerCallbackQuery,
        CallbackQuery,
        Command,
        MessageReceived,
        SendMessage,
    )
    from duragent.gateways.router import GatewayRouter

    manager = start_server()
    sent: list[Command] = []

    async def send(gateway: str, command: Command) -> None:
        sent.append(command)

    router = GatewayRouter(
        sessions=manager,
        agent_for=lambda name: agent,
        routes=[RouteConfig.model_validate({"match": {"gateway": "telegram"}, "agent": "helper"})],
        send=send,
        directory_path=tmp_path / "chats.json",
    )
    fake_llm.enqueue(tool_calls([("bash", {"command": "echo approved"})]))
    routing = {"channel": "telegram", "chat_type": "dm", "chat_id": "42", "sender_id": "42"}
    message = {
        "message_id": "1",
        "chat_id": "42",
        "sender": {"id": "42", "display_name": "Ana"},
        "content": {"type": "text", "text": "run it"},
        "routing": routing,
    }
    await router.handle("telegram", MessageReceived.model_validate(message))
    await until(lambda: any(isinstance(c, SendMessage) and c.inline_keyboard for c in sent))
    (prompt,) = [c for c in sent if isinstance(c, SendMessage) and c.inline_keyboard]
    assert prompt.inline_keyboard is not None
    allow = prompt.inline_keyboard.rows[0][0].callback_data
    (asking,) = manager.live.values()
    # Another session's turn waits for the model: the stop lasts until its reply is in.
    reply = threading.Event()
    fake_llm.enqueue(held(reply, text("slow")))
    working = await manager.create("helper")
    await working.submit("think")
    await until(lambda: len(fake_llm.requests) == 2)

    stopping = asyncio.create_task(manager.close(grace=GRACE))
    await until(lambda: not asking.busy)
    press = {"callback_query_id": "q1", "chat_id": "42", "sender": {"id": "42"}, "message_id": "m"}
    await router.handle("telegram", CallbackQuery.model_validate({**press, "data": allow}))
    reply.set()
    await asyncio.wait_for(stopping, 10)
    await router.stop()

    (toast,) = [c.text for c in sent if isinstance(c, AnswerCallbackQuery)]
    assert toast.startswith("Cannot decide: the server is stopping: the answer for call")
    assert "asked again when the server runs again" in toast
    assert [a["command"] for a in asking.log.state.pending_approvals] == ["echo approved"]
