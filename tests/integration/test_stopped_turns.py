"""A turn that stopped midway (paused at an approval by the unattended limit) and the message
that comes after it: the stopped turn finishes first, so what the model is sent reads in an
order every provider accepts (a tool call, its result, then the next user message)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from duragent.sessions.live import LiveSession
from duragent.sessions.manager import SessionManager
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer, RecordedRequest, text, tool_calls
from tests.e2e.server_harness import Api, ApiFactory, read_sse, session_manager
from tests.waiting import eventually, until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


@pytest.fixture
async def manager(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[SessionManager]:
    """The harness's agent, unattended for 1 s at most."""
    store = FilesystemSessionStore(tmp_path / "sessions", fsync="never")
    async with session_manager(tmp_path, fake_llm.url, store, max_background="1s") as made:
        yield made


def roles(request: RecordedRequest) -> list[str]:
    return [message["role"] for message in request.messages]


async def stopped_at_an_approval(
    manager: SessionManager, fake_llm: FakeLLMServer, sender: dict[str, str] | None = None
) -> LiveSession:
    """A session whose turn asked for an approval after the unattended limit had asked it to pause:
    the turn is over, the call is open and its approval is recorded but nobody is asked."""
    # The model answers after the 1 s limit: the turn records the approval, then pauses.
    fake_llm.enqueue(tool_calls([("bash", {"command": "printf one"})], delay=1.5))
    live = await manager.create("helper")
    await live.submit("run printf one", sender)
    await until(lambda: live.status == "paused" and not live.busy and live.log.state.pending_approvals)
    assert manager.runtime.approvals.pending(live.session_id) == []
    return live


async def test_a_message_to_a_session_stopped_at_an_approval_finishes_that_turn_first(
    manager: SessionManager, fake_llm: FakeLLMServer
) -> None:
    live = await stopped_at_an_approval(manager, fake_llm)
    fake_llm.enqueue(text("ran printf one"), text("the second reply"))

    ticket = await live.queue("and now something else")

    assert ticket.ahead == 1  # behind the stopped turn, taken up again
    broker = manager.runtime.approvals
    await until(lambda: bool(broker.pending(live.session_id)))
    (request,) = broker.pending(live.session_id)
    live.decide(request.call_id, "allow_once")
    await until(lambda: not live.busy and live.log.state.turns == 2)

    last = fake_llm.requests[-1]
    assert roles(last) == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert last.messages[3]["content"].strip() == "one"  # the call ran, once, before the message
    assert last.messages[-1]["content"] == "and now something else"
    assert live.status == "active"


async def test_a_message_that_reaches_a_turn_with_open_calls_answers_them_before_it(
    manager: SessionManager, fake_llm: FakeLLMServer
) -> None:
    """However a turn for a new message starts (here straight through the runtime, past the
    session's queue), a call left open is answered before the message is stored."""
    live = await stopped_at_an_approval(manager, fake_llm)
    fake_llm.enqueue(text("fine"))

    async with asyncio.timeout(10):  # (were the call asked again, the turn would wait for a person)
        async for _event in manager.runtime.run_turn(live.log, live.agent, "never mind that"):
            pass

    sent = fake_llm.requests[-1]
    assert roles(sent) == ["system", "user", "assistant", "tool", "user"]
    assert sent.messages[3]["content"].startswith("interrupted")
    assert live.log.state.pending_approvals == []


async def stopped_over_http(api: Api, fake_llm: FakeLLMServer) -> tuple[str, dict[str, Any]]:
    """A session whose turn stopped at an approval (the client left while the model thought, the
    1 s unattended limit paused the turn once it had asked): its id and the waiting call."""
    fake_llm.enqueue(tool_calls([("bash", {"command": "touch asked.txt"})], delay=1.5), text("Touched it."))
    session = await api.new_session("helper")
    async with api.http.post(
        api.url(f"/api/v1/sessions/{session}/stream"), json={"content": "touch it"}
    ) as response:
        async for event in read_sse(response):
            if event.event == "start":
                break  # and go: the turn runs on unattended

    async def stopped() -> dict[str, Any] | None:
        _, info = await api.call("GET", f"/api/v1/sessions/{session}")
        return info if info["status"] == "paused" and not info["busy"] else None

    (waiting,) = (await eventually(stopped))["pending_approvals"]
    return session, waiting


async def test_the_api_shows_and_takes_an_approval_a_stopped_turn_left_unanswered(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api = await start_api(git=False, max_background="1s")
    session, waiting = await stopped_over_http(api, fake_llm)
    assert (waiting["tool"], waiting["command"]) == ("bash", "touch asked.txt")

    status, body = await api.call(
        "POST",
        f"/api/v1/sessions/{session}/approve",
        {"call_id": waiting["call_id"], "decision": "allow_once"},
    )

    assert status == 200, body
    assert body["content"] == "Touched it."
    _, info = await api.call("GET", f"/api/v1/sessions/{session}")
    assert info["pending_approvals"] == []


async def test_approving_a_stopped_call_the_policy_now_allows_reports_the_finished_turn(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """Taken up again, the turn does not ask (a person allowed such commands meanwhile): the
    answer is the turn's outcome, not a complaint that nothing was asked."""
    api = await start_api(git=False, max_background="1s")
    session, waiting = await stopped_over_http(api, fake_llm)
    (tmp_path / "ws0" / "data" / "agents" / "helper" / "policy.yaml").write_text('allow: ["bash:touch *"]\n')

    status, body = await api.call(
        "POST",
        f"/api/v1/sessions/{session}/approve",
        {"call_id": waiting["call_id"], "decision": "allow_once"},
    )

    assert status == 200, body
    assert body["content"] == "Touched it."


async def test_a_group_message_nobody_addressed_waits_while_a_turn_is_stopped_midway(
    manager: SessionManager, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """A chat's unaddressed group message is stored as context at once when the session is idle;
    stored between a stopped turn's call and its result, it would break the session the same way."""
    from types import SimpleNamespace

    from duragent.gateways.router import ChatBinding, ChatKey, GatewayRouter

    live = await stopped_at_an_approval(manager, fake_llm)
    router = GatewayRouter(
        sessions=manager,
        agent_for=lambda name: live.agent,
        routes=[],
        send=lambda *args, **kwargs: None,  # type: ignore[arg-type,return-value]
        directory_path=tmp_path / "chats.json",
    )
    key = ChatKey("telegram", "group-1", "helper")
    binding = ChatBinding(router, key, live, await live.subscribe())
    router.bindings[key] = binding
    before = list(live.log.state.conversation)
    message = SimpleNamespace(sender=SimpleNamespace(id="u1", label="Bea"))

    await router._keep_as_context(key, message, "[Bea] lunch at noon?")  # type: ignore[arg-type]

    assert live.log.state.conversation == before
    assert binding.context == ["[Bea] lunch at noon?"]
    binding.subscription.close()


async def test_a_chat_message_to_a_session_stopped_at_an_approval_asks_that_call_again_first(
    manager: SessionManager, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """Through a gateway, as through the API: the waiting call is asked again (with buttons) and
    the message waits, stored, rather than the call being cut off as interrupted; and only the
    person whose message started that turn may answer it, though someone else's message woke it."""
    from duragent.agents.spec import AccessSpec
    from duragent.config import RouteConfig
    from duragent.gateways.protocol import (
        AnswerCallbackQuery,
        CallbackQuery,
        Command,
        MessageReceived,
        SendMessage,
    )
    from duragent.gateways.router import ChatKey, GatewayRouter

    bea = {"id": "7", "name": "Bea", "gateway": "telegram", "message_id": "16"}
    live = await stopped_at_an_approval(manager, fake_llm, sender=bea)
    sent: list[Command] = []

    async def send(gateway: str, command: Command) -> None:
        sent.append(command)

    group = AccessSpec.model_validate({"groups": {"allowlist": ["-100"]}, "debounce": "0s"})
    spec = live.agent.spec.model_copy(update={"access": group})
    agent = dataclasses.replace(live.agent, document=live.agent.document.model_copy(update={"spec": spec}))
    router = GatewayRouter(
        sessions=manager,
        agent_for=lambda name: agent,
        routes=[RouteConfig.model_validate({"match": {"gateway": "telegram"}, "agent": "helper"})],
        send=send,
        directory_path=tmp_path / "chats.json",
    )
    await router.directory.set(ChatKey("telegram", "-100", "helper"), live.session_id)
    routing = {"channel": "telegram", "chat_type": "group", "chat_id": "-100", "sender_id": "42"}
    message = MessageReceived.model_validate(
        {
            "message_id": "17",
            "chat_id": "-100",
            "sender": {"id": "42", "display_name": "Ana"},
            "content": {"type": "text", "text": "@bot and now something else"},
            "routing": routing,
            "mentions_bot": True,
        }
    )

    await router.handle("telegram", message)

    await until(lambda: any(isinstance(c, SendMessage) and c.inline_keyboard for c in sent), within=10)
    (prompt,) = [c for c in sent if isinstance(c, SendMessage)]
    assert "printf one" in prompt.content
    assert [q["content"] for q in live.log.state.queued] == ["Ana: @bot and now something else"]
    assert not any(
        m.get("role") == "tool" and "interrupted" in str(m.get("content"))
        for m in live.log.state.conversation
    )

    assert prompt.inline_keyboard is not None
    allow = prompt.inline_keyboard.rows[0][0].callback_data
    for query_id, presser in (("q1", "42"), ("q2", "7")):
        press = {
            "callback_query_id": query_id,
            "chat_id": "-100",
            "sender": {"id": presser},
            "message_id": "m",
        }
        await router.handle("telegram", CallbackQuery.model_validate({**press, "data": allow}))
    toasts = [c.text for c in sent if isinstance(c, AnswerCallbackQuery)]
    assert toasts == ["Only the original requester can approve this command", "✓ Running"]
    await router.stop()


async def test_a_reply_a_server_stop_cut_off_is_asked_for_again_at_the_next_start(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    """A stop that outlasts its grace cancels the turn mid-reply: the text so far is kept (marked
    partial) and the turn paused for the shutdown. The next start left it there, as if the half
    reply were the answer: the person's message was never answered, and nothing said so."""
    sessions = tmp_path / "sessions"
    fake_llm.enqueue(text("one two three four", chunks=4, chunk_delay=60))
    store = FilesystemSessionStore(sessions, fsync="never")
    async with session_manager(tmp_path / "before", fake_llm.url, store, max_background="1h") as first:
        live = await first.create("helper")
        session_id = live.session_id
        subscription = await live.subscribe()
        await live.submit("count to four")
        async with asyncio.timeout(10):
            async for event in subscription:
                if event.event == "token":
                    break
    # (closed with no grace: the stream is cut after its first words)

    fake_llm.enqueue(text("one two three four"))
    store = FilesystemSessionStore(sessions, fsync="never")
    async with session_manager(tmp_path / "after", fake_llm.url, store, max_background="1h") as second:
        assert await second.recover_session(session_id) == "resumed"
        live = await second.get(session_id)
        await until(lambda: not live.busy and live.log.state.conversation[-1]["role"] == "assistant")

        last = fake_llm.requests[-1]
        assert roles(last) == ["system", "user"]  # asked anew: not after its own half answer
        assert live.log.state.conversation[-1] == {"role": "assistant", "content": "one two three four"}
        assert live.status == "active"
