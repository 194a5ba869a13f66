"""Regressions found in review: the loop, approvals and the OpenAI-compatible provider."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from duragent.agents.loader import Agent, load_agent
from duragent.llm.openai_compat import OpenAICompatProvider
from duragent.llm.types import LLMRequest, Message, ToolCallComplete
from duragent.runtime.approvals import ApprovalBroker
from duragent.runtime.events import ApprovalRequired, ToolCallFinished, TurnFinished, TurnPaused
from duragent.runtime.loop import Runtime, TurnControl, calls_awaiting_approval, drain, needs_model
from duragent.runtime.providers import ProviderPool
from duragent.sessions.log import SessionLog
from duragent.stores.base import SessionEvent, SessionReadOptions
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer, delay, text, tool_calls

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
  system_prompt: You are a test agent.
  tools:
    builtin: [bash]
    policy:
      mode: ask
      allow: ["bash:echo *"]
"""


@pytest.fixture
def agent(tmp_path: Path, fake_llm: FakeLLMServer) -> Agent:
    directory = tmp_path / "agents" / "helper"
    directory.mkdir(parents=True)
    (directory / "agent.yaml").write_text(AGENT_YAML.format(url=fake_llm.url))
    loaded, _ = load_agent(directory, env={"OPENAI_API_KEY": "sk-test"})
    return loaded


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FilesystemSessionStore]:
    opened = FilesystemSessionStore(tmp_path / "sessions", fsync="never")
    yield opened
    await opened.close()


@pytest.fixture
async def providers() -> AsyncIterator[ProviderPool]:
    pool = ProviderPool({"OPENAI_API_KEY": "sk-test"})
    yield pool
    await pool.close()


async def test_an_unaddressed_group_message_owes_no_reply_after_a_restart(
    fake_llm: FakeLLMServer, agent: Agent, store: FilesystemSessionStore, providers: ProviderPool
) -> None:
    session = await SessionLog.create(store, agent="helper")
    fake_llm.enqueue(text("hello"))
    await drain(Runtime(provider_for=providers.for_agent).run_turn(session, agent, "@bot hi"))
    # what the gateway router stores for a group message nobody addressed to the bot
    await session.append(
        "user_message", {"content": "alice: lunch anyone?", "turn": session.state.turns, "silent": True}
    )
    assert not needs_model(session)
    await session.snapshot()
    reopened = await SessionLog.open(store, session.session_id)
    assert not needs_model(reopened)


async def test_an_unanswered_message_still_needs_the_model_when_context_follows_it(
    store: FilesystemSessionStore,
) -> None:
    session = await SessionLog.create(store, agent="helper")
    await session.append("user_message", {"content": "@bot what's up?", "turn": 1})
    await session.append("user_message", {"content": "bob: hm", "turn": 1, "silent": True})
    assert needs_model(session)


async def test_an_ask_call_met_by_a_pause_is_left_to_ask_again_not_denied(
    fake_llm: FakeLLMServer, agent: Agent, store: FilesystemSessionStore, providers: ProviderPool
) -> None:
    session = await SessionLog.create(store, agent="helper")
    broker = ApprovalBroker()
    runtime = Runtime(provider_for=providers.for_agent, approvals=broker)
    fake_llm.enqueue(delay(0.3, tool_calls([("bash", {"command": "ls /"})])), text("done"))
    control = TurnControl()

    async def pause_once_the_model_is_asked() -> None:
        while not fake_llm.requests:  # noqa: ASYNC110 - the fake server offers no event to wait on
            await asyncio.sleep(0.01)
        control.request_pause("client disconnected")

    pauser = asyncio.create_task(pause_once_the_model_is_asked())
    events = await drain(runtime.run_turn(session, agent, "list root", control=control))
    await pauser
    assert isinstance(events[-1], TurnPaused)
    stored = await store.read(session.session_id, SessionReadOptions())
    assert not [e for e in stored if e.type == "tool_result"]
    waiting = calls_awaiting_approval(session)
    assert [c.arguments for c in waiting] == [{"command": "ls /"}]
    assert [a["call_id"] for a in session.state.pending_approvals] == [waiting[0].id]

    # resumed: the person is asked again, and the call runs once allowed
    resumed: list[object] = []
    async for event in runtime.run_turn(session, agent, None):
        resumed.append(event)
        if isinstance(event, ApprovalRequired):
            broker.decide(event.call_id, "allow_once")
    finished = [e for e in resumed if isinstance(e, ToolCallFinished)]
    assert finished
    assert finished[0].ok
    assert isinstance(resumed[-1], TurnFinished)


async def test_an_approval_that_could_not_be_recorded_leaves_no_open_request(
    fake_llm: FakeLLMServer, agent: Agent, store: FilesystemSessionStore, providers: ProviderPool
) -> None:
    session = await SessionLog.create(store, agent="helper")
    broker = ApprovalBroker()
    runtime = Runtime(provider_for=providers.for_agent, approvals=broker)

    def refuse_approvals(events: list[SessionEvent]) -> None:
        if any(e.type == "approval_required" for e in events):
            raise OSError("disk full")

    session.listeners.append(refuse_approvals)
    fake_llm.enqueue(tool_calls([("bash", {"command": "ls /"})]))
    with pytest.raises(OSError, match="disk full"):
        await drain(runtime.run_turn(session, agent, "list root"))
    assert broker.pending() == []


async def _id_less_tool_calls(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for index, command in enumerate(["echo a", "echo b"]):
        call = {"index": index, "function": {"name": "bash", "arguments": json.dumps({"command": command})}}
        chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    await response.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
    return response


async def test_tool_calls_without_ids_get_ids_unique_across_replies() -> None:
    app = web.Application()
    app.router.add_post("/chat/completions", _id_less_tool_calls)
    app.router.add_post("/v1/chat/completions", _id_less_tool_calls)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/v1"))
        async with OpenAICompatProvider(url, "sk-test", api_key_env="OPENAI_API_KEY") as provider:
            request = LLMRequest("gpt-test", (Message("user", "hi"),))
            ids: list[str] = []
            for _ in range(2):
                async for chunk in provider.stream(request):
                    if isinstance(chunk, ToolCallComplete):
                        ids.append(chunk.tool_call.id)
    finally:
        await server.close()
    assert len(ids) == 4
    assert len(set(ids)) == 4
    assert all(i.startswith("call") for i in ids)
