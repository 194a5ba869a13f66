"""`/retry` in a chat after the server restarted: the chat's binding is made anew and reads from
the log whom the failed turn answers. A turn no one in the chat started (an API message, a
scheduled task) stays so: not answered as a reply to, nor approved by, whoever spoke before it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from duragent.gateways.protocol import AnswerCallbackQuery, Command, SendMessage
from duragent.testing.echo_gateway import EchoGatewayControl
from duragent.testing.fake_llm import FakeLLMServer, error, text, tool_calls
from tests.e2e.server_harness import serving_gateways, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

OWNER = "100"
MEMBER = "300"
ACCESS = """\
  access:
    dm: {policy: allowlist, allowlist: ["100"]}
    groups: {policy: open, activation: mention}
"""

Serve = Callable[[], Awaitable[tuple[TestServer, aiohttp.ClientSession]]]


def said(chat: str, predicate: Callable[[SendMessage], bool]) -> Callable[[list[Command]], bool]:
    return lambda cs: any(isinstance(c, SendMessage) and c.chat_id == chat and predicate(c) for c in cs)


async def test_a_retried_api_turn_after_a_restart_is_no_one_in_the_chats(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config_path = write_workspace(tmp_path / "ws", fake_llm.url, git=False, agents={"helper": "continue"})
    agent_yaml = config_path.parent / "data" / "agents" / "helper" / "agent.yaml"
    agent_yaml.write_text(agent_yaml.read_text() + ACCESS)
    control = EchoGatewayControl(tmp_path / "echo")
    config_path.write_text(
        config_path.read_text()
        + control.gateways_yaml()
        + "routes:\n  - match: {gateway: echo}\n    agent: helper\n"
    )
    fake_llm.enqueue(
        text("hello group"),
        error(404, "The model `gpt-test` does not exist"),
        tool_calls([("bash", {"command": "ls /"})]),
        text("listed it"),
    )
    async with serving_gateways(config_path) as (server, http):
        control.inject_message("g1", "@bot hi", sender_id=MEMBER, chat_type="group", mentions_bot=True)
        await control.wait_for(said("g1", lambda c: c.content == "hello group"), within=10)
        async with http.get(server.make_url("/api/v1/sessions")) as response:
            (session,) = (await response.json())["sessions"]
        url = server.make_url(f"/api/v1/sessions/{session['session_id']}/messages")
        async with http.post(url, json={"content": "list root"}) as response:
            assert response.status == 502, await response.text()

    async with serving_gateways(config_path) as (server, http):
        control.inject_message("g1", "/retry", sender_id=MEMBER, chat_type="group")
        commands = await control.wait_for(said("g1", lambda c: c.inline_keyboard is not None), within=10)
        (prompt,) = [c for c in commands if isinstance(c, SendMessage) and c.inline_keyboard]
        assert prompt.inline_keyboard is not None
        assert prompt.reply_to is None  # (not a reply to the member's "hi")
        allow_once = prompt.inline_keyboard.rows[0][0].callback_data

        control.press_button("g1", "m2", allow_once, sender_id=MEMBER)
        commands = await control.wait_for(
            lambda cs: any(isinstance(c, AnswerCallbackQuery) for c in cs), within=10
        )
        (refusal,) = [c for c in commands if isinstance(c, AnswerCallbackQuery)]
        assert refusal.text.startswith("Nobody in this chat asked for this command")

        control.press_button("g1", "m2", allow_once, sender_id=OWNER)
        await control.wait_for(said("g1", lambda c: c.content == "listed it"), within=10)
        (reply,) = [c for c in control.sent("g1") if c.content == "listed it"]
        assert reply.reply_to is None
