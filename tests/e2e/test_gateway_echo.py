"""The server with a real gateway plugin subprocess (the SDK echo plugin) and the fake LLM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from duragent.access_tokens import auth_headers
from duragent.config import load_config
from duragent.gateways.protocol import AnswerCallbackQuery, Command, SendMessage, SendTyping
from duragent.server.app import create_app
from duragent.testing.echo_gateway import EchoGatewayControl
from duragent.testing.fake_llm import FakeLLMServer, ScriptedCall, broken_stream, error, text, tool_calls
from tests.e2e.server_harness import CHILD_ENV, write_workspace
from tests.waiting import eventually

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

OWNER = "100"
#: Routed to the second agent, `second`, wherever it writes.
OTHER = "200"
ACCESS = """\
  access:
    dm: {policy: allowlist, allowlist: ["100"]}
    groups: {policy: open, activation: mention}
    debounce: 200ms
"""


class Server:
    """The app on a test server, its echo plugin's control folder, and an HTTP client."""

    def __init__(self, server: TestServer, control: EchoGatewayControl, http: aiohttp.ClientSession):
        self.server = server
        self.control = control
        self.http = http

    async def gateways(self) -> list[dict[str, object]]:
        async with self.http.get(self.server.make_url("/api/admin/v1/gateways")) as response:
            body = await response.json()
        gateways: list[dict[str, object]] = body["gateways"]
        return gateways


@pytest.fixture
async def served(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[Server]:
    agents = {"helper": "continue", "second": "continue"}
    config_path = write_workspace(tmp_path / "ws", fake_llm.url, git=False, agents=agents)
    for name in agents:
        agent_yaml = config_path.parent / "data" / "agents" / name / "agent.yaml"
        agent_yaml.write_text(agent_yaml.read_text() + ACCESS)
    control = EchoGatewayControl(tmp_path / "echo")
    config_path.write_text(
        config_path.read_text()
        + control.gateways_yaml()
        + "routes:\n"
        + f"  - match: {{gateway: echo, sender_id: '{OTHER}'}}\n    agent: second\n"
        + "  - match: {gateway: echo}\n    agent: helper\n"
    )
    config = load_config(config_path)
    app = create_app(config, env=CHILD_ENV, shutdown_grace=2, idle_ttl=timedelta(minutes=5))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    http = aiohttp.ClientSession(headers=auth_headers(config))
    served = Server(server, control, http)
    for _ in range(200):
        if (await served.gateways())[0]["state"] == "ready":
            break
        await asyncio.sleep(0.05)
    yield served
    await http.close()
    await server.close()


def sends(chat: str) -> object:
    def condition(commands: list[Command]) -> bool:
        return any(isinstance(c, SendMessage) and c.chat_id == chat for c in commands)

    return condition


async def test_a_message_in_gets_the_agents_reply_out(served: Server, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("Hello from the agent"))
    message_id = served.control.inject_message("c1", "hi", sender_id=OWNER)
    commands = await served.control.wait_for(sends("c1"), within=10)  # type: ignore[arg-type]
    (reply,) = [c for c in commands if isinstance(c, SendMessage)]
    assert reply.content == "Hello from the agent"
    assert reply.reply_to == message_id
    assert any(isinstance(c, SendTyping) for c in commands)
    assert (await served.gateways())[0]["state"] == "ready"


async def test_rapid_messages_from_one_sender_become_one_turn(
    served: Server, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text("got both"))
    served.control.inject_message("c2", "first", sender_id=OWNER)
    served.control.inject_message("c2", "second", sender_id=OWNER)
    await served.control.wait_for(sends("c2"), within=10)  # type: ignore[arg-type]
    (request,) = fake_llm.requests
    assert request.body["messages"][-1] == {"role": "user", "content": "first\nsecond"}


async def test_a_stranger_gets_no_reply(served: Server, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(text("should not be sent"))
    served.control.inject_message("c3", "hello?", sender_id="666")
    await asyncio.sleep(1.0)
    assert served.control.sent("c3") == []
    assert fake_llm.requests == []


async def test_group_messages_without_a_mention_are_context_not_turns(
    served: Server, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(text("answered"))
    served.control.inject_message(
        "g1", "we meet at noon", sender_id="7", display_name="Bea", chat_type="group"
    )
    await asyncio.sleep(0.6)
    assert fake_llm.requests == []
    served.control.inject_message(
        "g1", "@bot when do we meet?", sender_id="8", chat_type="group", mentions_bot=True
    )
    await served.control.wait_for(sends("g1"), within=10)  # type: ignore[arg-type]
    contents = [m["content"] for m in fake_llm.requests[0].body["messages"]]
    assert "Bea: we meet at noon" in contents


async def test_only_the_requester_may_press_the_approval_buttons(
    served: Server, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(tool_calls([("bash", {"command": "ls /"})]), text("listed it"))
    served.control.inject_message("c4", "list root", sender_id=OWNER)
    commands = await served.control.wait_for(sends("c4"), within=10)  # type: ignore[arg-type]
    (prompt,) = [c for c in commands if isinstance(c, SendMessage)]
    assert "ls /" in prompt.content
    assert prompt.inline_keyboard is not None
    allow_once = prompt.inline_keyboard.rows[0][0].callback_data
    assert allow_once.startswith("approve:")
    assert allow_once.endswith(":allow_once")

    served.control.press_button("c4", "m1", allow_once, sender_id="999")
    toasts = await served.control.wait_for(
        lambda cs: any(isinstance(c, AnswerCallbackQuery) for c in cs), within=10
    )
    (refusal,) = [c for c in toasts if isinstance(c, AnswerCallbackQuery)]
    assert refusal.text == "Only the original requester can approve this command"

    served.control.press_button("c4", "m1", allow_once, sender_id=OWNER)
    await served.control.wait_for(
        lambda cs: len([c for c in cs if isinstance(c, SendMessage)]) >= 2, within=10
    )
    assert served.control.sent("c4")[-1].content == "listed it"


def prompts(chat: str, count: int) -> object:
    def condition(commands: list[Command]) -> bool:
        asked = [
            c for c in commands if isinstance(c, SendMessage) and c.inline_keyboard and c.chat_id == chat
        ]
        return len(asked) >= count

    return condition


def toasts(count: int) -> object:
    return lambda commands: len([c for c in commands if isinstance(c, AnswerCallbackQuery)]) >= count


async def test_two_agents_in_one_chat_waiting_on_the_same_call_id_each_get_their_own_buttons(
    served: Server, fake_llm: FakeLLMServer
) -> None:
    """Providers number calls per reply (`call_0`): the second agent's button must not answer,
    or be refused as, the first agent's call."""
    same_id = [ScriptedCall("bash", {"command": "ls /"}, "call_0")]
    fake_llm.enqueue(tool_calls(same_id), tool_calls(same_id))
    served.control.inject_message(
        "g2", "@bot list root", sender_id=OWNER, chat_type="group", mentions_bot=True
    )
    await served.control.wait_for(prompts("g2", 1), within=10)  # type: ignore[arg-type]
    served.control.inject_message("g2", "@bot me too", sender_id=OTHER, chat_type="group", mentions_bot=True)
    commands = await served.control.wait_for(prompts("g2", 2), within=10)  # type: ignore[arg-type]
    first, second = [c for c in commands if isinstance(c, SendMessage) and c.inline_keyboard]
    assert first.inline_keyboard is not None
    assert second.inline_keyboard is not None
    assert first.inline_keyboard.rows[0][0].callback_data != second.inline_keyboard.rows[0][0].callback_data

    fake_llm.enqueue(text("second agent listed it"))
    served.control.press_button("g2", "m2", second.inline_keyboard.rows[0][0].callback_data, sender_id=OTHER)
    commands = await served.control.wait_for(toasts(1), within=10)  # type: ignore[arg-type]
    (toast,) = [c for c in commands if isinstance(c, AnswerCallbackQuery)]
    assert toast.text == "✓ Running"
    await served.control.wait_for(
        lambda cs: any(isinstance(c, SendMessage) and c.content == "second agent listed it" for c in cs),
        within=10,
    )

    # the first agent's call still waits, for its own requester only
    served.control.press_button("g2", "m1", first.inline_keyboard.rows[0][2].callback_data, sender_id=OTHER)
    commands = await served.control.wait_for(toasts(2), within=10)  # type: ignore[arg-type]
    refusal = [c for c in commands if isinstance(c, AnswerCallbackQuery)][-1]
    assert refusal.text == "Only the original requester can approve this command"


async def test_approval_buttons_fit_telegrams_64_bytes_whatever_the_providers_call_id(
    served: Server, fake_llm: FakeLLMServer
) -> None:
    long_id = "call_" + "x" * 90
    fake_llm.enqueue(tool_calls([ScriptedCall("bash", {"command": "ls /"}, long_id)]), text("listed it"))
    served.control.inject_message("c5", "list root", sender_id=OWNER)
    commands = await served.control.wait_for(prompts("c5", 1), within=10)  # type: ignore[arg-type]
    (prompt,) = [c for c in commands if isinstance(c, SendMessage)]
    assert prompt.inline_keyboard is not None
    buttons = prompt.inline_keyboard.rows[0]
    assert all(len(button.callback_data.encode()) <= 64 for button in buttons)

    served.control.press_button("c5", "m1", buttons[0].callback_data, sender_id=OWNER)
    await served.control.wait_for(
        lambda cs: any(isinstance(c, SendMessage) and c.content == "listed it" for c in cs), within=10
    )


async def test_a_button_left_from_an_earlier_call_does_not_decide_a_later_call_of_the_same_id(
    served: Server, fake_llm: FakeLLMServer
) -> None:
    """Models reuse call ids from reply to reply (`call_0`): a button of an earlier call, answered
    elsewhere (here through the API), is no longer current, and must not decide the next `call_0`."""
    fake_llm.enqueue(
        tool_calls([ScriptedCall("bash", {"command": "ls /"}, "call_0")]),
        text("listed root"),
        tool_calls([ScriptedCall("bash", {"command": "ls /etc"}, "call_0")]),
        text("listed etc"),
    )
    served.control.inject_message("c6", "list root", sender_id=OWNER)
    await served.control.wait_for(prompts("c6", 1), within=10)  # type: ignore[arg-type]
    async with served.http.get(served.server.make_url("/api/v1/sessions")) as response:
        (session,) = (await response.json())["sessions"]
    async with served.http.post(
        served.server.make_url(f"/api/v1/sessions/{session['session_id']}/approve"),
        json={"call_id": "call_0", "decision": "deny"},
    ) as response:
        assert response.status == 200, await response.text()
    served.control.inject_message("c6", "list etc", sender_id=OWNER)
    commands = await served.control.wait_for(prompts("c6", 2), within=10)  # type: ignore[arg-type]
    first, second = [c for c in commands if isinstance(c, SendMessage) and c.inline_keyboard]
    assert first.inline_keyboard is not None
    assert second.inline_keyboard is not None
    assert "ls /etc" in second.content

    served.control.press_button("c6", "m1", first.inline_keyboard.rows[0][0].callback_data, sender_id=OWNER)
    commands = await served.control.wait_for(toasts(1), within=10)  # type: ignore[arg-type]
    (stale,) = [c for c in commands if isinstance(c, AnswerCallbackQuery)]
    assert stale.text == "This approval is no longer current"

    served.control.press_button("c6", "m3", second.inline_keyboard.rows[0][2].callback_data, sender_id=OWNER)
    commands = await served.control.wait_for(toasts(2), within=10)  # type: ignore[arg-type]
    assert [c for c in commands if isinstance(c, AnswerCallbackQuery)][-1].text == "✗ Denied"
    await served.control.wait_for(
        lambda cs: any(isinstance(c, SendMessage) and c.content == "listed etc" for c in cs), within=10
    )
    tool_results = [m["content"] for m in fake_llm.requests[-1].body["messages"] if m.get("role") == "tool"]
    assert tool_results[-1].startswith("denied")


async def test_a_message_of_only_whitespace_starts_no_turn_and_joins_no_other(
    served: Server, fake_llm: FakeLLMServer
) -> None:
    # A model refuses a turn of blank text ("text content blocks must contain non-whitespace
    # text"): the chat would see an error for a message it never meant to send.
    fake_llm.enqueue(text("answered the real one"))
    served.control.inject_message("c9", " \n\t ", sender_id=OWNER)
    served.control.inject_message("c9", "the real question", sender_id=OWNER)
    await served.control.wait_for(sends("c9"), within=10)  # type: ignore[arg-type]

    (request,) = fake_llm.requests
    assert request.body["messages"][-1] == {"role": "user", "content": "the real question"}
    assert [reply.content for reply in served.control.sent("c9")] == ["answered the real one"]


async def test_a_turn_queued_through_the_api_does_not_take_the_chat_messages_place(
    served: Server, fake_llm: FakeLLMServer
) -> None:
    # The chat's turn waits at an approval; an API message, then the owner's next chat message,
    # queue behind it. The API turn must not answer (nor let approve) as the owner's message.
    fake_llm.enqueue(
        tool_calls([("bash", {"command": "ls /"})]),
        text("listed it"),
        text("api answer"),
        text("chat answer"),
    )
    served.control.inject_message("c10", "list root", sender_id=OWNER)
    commands = await served.control.wait_for(sends("c10"), within=10)  # type: ignore[arg-type]
    (prompt,) = [c for c in commands if isinstance(c, SendMessage)]
    assert prompt.inline_keyboard is not None
    async with served.http.get(served.server.make_url("/api/v1/sessions")) as response:
        (session,) = (await response.json())["sessions"]
    url = served.server.make_url(f"/api/v1/sessions/{session['session_id']}/messages")
    async with served.http.post(url, json={"content": "from the api"}) as response:
        assert response.status == 202, await response.text()
    second = served.control.inject_message("c10", "and now?", sender_id=OWNER)

    async def both_queued() -> bool | None:
        async with served.http.get(served.server.make_url(f"/api/v1/sessions/{session['session_id']}")) as r:
            return True if (await r.json())["queued"] == 2 else None

    await eventually(both_queued, within=10)

    allow_once = prompt.inline_keyboard.rows[0][0].callback_data
    served.control.press_button("c10", "m1", allow_once, sender_id=OWNER)
    await served.control.wait_for(
        lambda cs: len([c for c in cs if isinstance(c, SendMessage)]) >= 4, within=10
    )

    replies = {reply.content: reply.reply_to for reply in served.control.sent("c10")[1:]}
    assert replies["api answer"] is None
    assert replies["chat answer"] == second


async def test_a_command_nobody_in_the_group_asked_for_is_approved_only_by_the_owner(
    served: Server, fake_llm: FakeLLMServer
) -> None:
    # A scheduled task or an API message runs in a group's session: its command was asked for
    # by no one there, so being allowed in the group (anyone, here) is not enough to run it.
    fake_llm.enqueue(text("hello group"), tool_calls([("bash", {"command": "ls /"})]), text("listed it"))
    served.control.inject_message("g11", "@bot hi", sender_id=OWNER, chat_type="group", mentions_bot=True)
    await served.control.wait_for(sends("g11"), within=10)  # type: ignore[arg-type]
    async with served.http.get(served.server.make_url("/api/v1/sessions")) as response:
        (session,) = (await response.json())["sessions"]
    url = served.server.make_url(f"/api/v1/sessions/{session['session_id']}/messages")
    async with served.http.post(url, json={"content": "list root"}) as response:
        assert response.status == 202, await response.text()
    commands = await served.control.wait_for(prompts("g11", 1), within=10)  # type: ignore[arg-type]
    (prompt,) = [c for c in commands if isinstance(c, SendMessage) and c.inline_keyboard]
    assert prompt.inline_keyboard is not None
    allow_once = prompt.inline_keyboard.rows[0][0].callback_data

    served.control.press_button("g11", "m2", allow_once, sender_id="300")
    commands = await served.control.wait_for(toasts(1), within=10)  # type: ignore[arg-type]
    (refusal,) = [c for c in commands if isinstance(c, AnswerCallbackQuery)]
    assert refusal.text.startswith("Nobody in this chat asked for this command")

    served.control.press_button("g11", "m2", allow_once, sender_id=OWNER)
    commands = await served.control.wait_for(toasts(2), within=10)  # type: ignore[arg-type]
    assert [c for c in commands if isinstance(c, AnswerCallbackQuery)][1].text == "✓ Running"
    await served.control.wait_for(
        lambda cs: any(isinstance(c, SendMessage) and c.content == "listed it" for c in cs), within=10
    )


async def test_retry_in_a_chat_runs_its_failed_turn_again(served: Server, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(error(404, "The model `gpt-test` does not exist"), text("second time lucky"))
    served.control.inject_message("c12", "what is the plan?", sender_id=OWNER)
    await served.control.wait_for(
        lambda cs: any(isinstance(c, SendMessage) and "/retry runs it again" in c.content for c in cs),
        within=10,
    )

    served.control.inject_message("c12", "/retry", sender_id=OWNER)

    await served.control.wait_for(
        lambda cs: any(isinstance(c, SendMessage) and c.content == "second time lucky" for c in cs), within=10
    )
    users = [m for m in fake_llm.requests[-1].messages if m["role"] == "user"]
    assert [m["content"] for m in users] == ["what is the plan?"]
    served.control.inject_message("c12", "/retry", sender_id=OWNER)
    await served.control.wait_for(
        lambda cs: any(
            isinstance(c, SendMessage) and c.content.startswith("Cannot retry: the last turn") for c in cs
        ),
        within=10,
    )


async def test_retry_in_a_chat_whose_session_ended_starts_no_new_one(
    served: Server, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(error(404, "The model `gpt-test` does not exist"))
    served.control.inject_message("c13", "what is the plan?", sender_id=OWNER)
    await served.control.wait_for(
        lambda cs: any(isinstance(c, SendMessage) and "/retry runs it again" in c.content for c in cs),
        within=10,
    )
    async with served.http.get(served.server.make_url("/api/v1/sessions")) as response:
        (session,) = (await response.json())["sessions"]
    async with served.http.post(served.server.make_url(f"/api/v1/sessions/{session['session_id']}/end")) as r:
        assert r.status == 200, await r.text()

    served.control.inject_message("c13", "/retry", sender_id=OWNER)

    await served.control.wait_for(
        lambda cs: any(isinstance(c, SendMessage) and c.content.startswith("No active session") for c in cs),
        within=10,
    )
    async with served.http.get(served.server.make_url("/api/v1/sessions")) as response:
        assert [s["session_id"] for s in (await response.json())["sessions"]] == [session["session_id"]]


async def test_a_turn_whose_reply_was_cut_off_is_offered_a_retry_that_answers_it_whole(
    served: Server, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(broken_stream(2, "one two three four", chunks=4), text("one two three four"))

    served.control.inject_message("c14", "count to four", sender_id=OWNER)
    await served.control.wait_for(
        lambda cs: any(isinstance(c, SendMessage) and "/retry runs it again" in c.content for c in cs),
        within=10,
    )
    served.control.inject_message("c14", "/retry", sender_id=OWNER)

    whole = "one two three four"
    await served.control.wait_for(
        lambda cs: any(isinstance(c, SendMessage) and c.content == whole for c in cs), within=10
    )
    # (asked anew after the person's message: not after its own half answer)
    assert [m["role"] for m in fake_llm.requests[-1].messages] == ["system", "user"]


async def test_a_retry_by_another_member_of_a_group_leaves_its_approvals_to_the_sender(
    served: Server, fake_llm: FakeLLMServer
) -> None:
    """Anyone the group lets talk to the agent may run a failed turn again (they could send the
    message themselves), but it stays the sender's turn: its reply answers them, and only they
    approve its commands, as before it failed."""
    fake_llm.enqueue(
        error(404, "The model `gpt-test` does not exist"),
        tool_calls([("bash", {"command": "ls /"})]),
        text("listed it"),
    )
    asked = served.control.inject_message(
        "g15", "@bot list root", sender_id=OWNER, chat_type="group", mentions_bot=True
    )
    await served.control.wait_for(
        lambda cs: any(isinstance(c, SendMessage) and "/retry runs it again" in c.content for c in cs),
        within=10,
    )

    served.control.inject_message("g15", "/retry", sender_id="300", chat_type="group")

    commands = await served.control.wait_for(prompts("g15", 1), within=10)  # type: ignore[arg-type]
    (prompt,) = [c for c in commands if isinstance(c, SendMessage) and c.inline_keyboard]
    assert prompt.inline_keyboard is not None
    allow_once = prompt.inline_keyboard.rows[0][0].callback_data
    served.control.press_button("g15", "m2", allow_once, sender_id="300")
    commands = await served.control.wait_for(toasts(1), within=10)  # type: ignore[arg-type]
    (refusal,) = [c for c in commands if isinstance(c, AnswerCallbackQuery)]
    assert refusal.text == "Only the original requester can approve this command"
    served.control.press_button("g15", "m2", allow_once, sender_id=OWNER)
    await served.control.wait_for(
        lambda cs: any(isinstance(c, SendMessage) and c.content == "listed it" for c in cs), within=10
    )
    (reply,) = [c for c in served.control.sent("g15") if c.content == "listed it"]
    assert reply.reply_to == asked
