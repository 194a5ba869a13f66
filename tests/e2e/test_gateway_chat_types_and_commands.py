"""Who the bot answers when a plugin names an unusual chat type, and chat commands meant for other bots."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.gateways.protocol import SendMessage
from duragent.testing.echo_gateway import EchoGatewayControl
from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import serving_gateways, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

OWNER = "100"
STRANGER = "666"
ACCESS = """\
  access:
    dm: {policy: allowlist, allowlist: ["100"]}
    groups: {policy: allowlist, allowlist: ["g-allowed"], activation: mention}
    debounce: 0ms
"""


@pytest.fixture
async def served(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[EchoGatewayControl]:
    config_path = write_workspace(tmp_path / "ws", fake_llm.url, git=False, agents={"helper": "continue"})
    agent_yaml = config_path.parent / "data" / "agents" / "helper" / "agent.yaml"
    agent_yaml.write_text(agent_yaml.read_text() + ACCESS)
    control = EchoGatewayControl(tmp_path / "echo")
    config_path.write_text(
        config_path.read_text()
        + control.gateways_yaml()
        + "routes:\n  - match: {gateway: echo}\n    agent: helper\n"
    )
    async with serving_gateways(config_path, within=10):
        yield control


def _texts(control: EchoGatewayControl, chat: str) -> list[str]:
    return [c.content for c in control.sent(chat) if isinstance(c, SendMessage)]


def sends(chat: str) -> object:
    return lambda commands: any(isinstance(c, SendMessage) and c.chat_id == chat for c in commands)


@pytest.mark.parametrize("chat_type", ["thread", "direct", "public_channel"])
async def test_a_stranger_in_a_chat_of_an_unknown_type_gets_no_reply(
    served: EchoGatewayControl, fake_llm: FakeLLMServer, chat_type: str
) -> None:
    fake_llm.enqueue(text("first reply"), text("second reply"))
    served.inject_message("c1", "hello?", sender_id=STRANGER, chat_type=chat_type)
    # The owner's message in the same chat is handled after the stranger's (one chat, in order).
    served.inject_message("c1", "hi", sender_id=OWNER, chat_type="dm")
    await served.wait_for(sends("c1"), within=10)  # type: ignore[arg-type]
    assert [r.body["messages"][-1]["content"] for r in fake_llm.requests] == ["hi"]


@pytest.mark.parametrize(
    ("command", "sender"),
    [
        # another bot in the group is told to reset: the plugin says it does not address us
        ("/reset@otherbot", OWNER),
        # in a group the bot answers only when mentioned, anyone there could otherwise wipe the
        # conversation with a bare `/reset`: it must address the bot like any message
        ("/reset", STRANGER),
    ],
)
async def test_a_reset_in_a_group_that_does_not_address_this_bot_leaves_its_session_alone(
    served: EchoGatewayControl, fake_llm: FakeLLMServer, command: str, sender: str
) -> None:
    fake_llm.enqueue(text("noted"), text("still here"))
    served.inject_message(
        "g-allowed", "@bot remember 7", sender_id=OWNER, chat_type="group", mentions_bot=True
    )
    await served.wait_for(sends("g-allowed"), within=10)  # type: ignore[arg-type]

    served.inject_message("g-allowed", command, sender_id=sender, chat_type="group")
    served.inject_message(
        "g-allowed", "@bot what number?", sender_id=OWNER, chat_type="group", mentions_bot=True
    )
    await served.wait_for(  # type: ignore[arg-type]
        lambda cs: len([c for c in cs if isinstance(c, SendMessage)]) >= 2, within=10
    )

    assert _texts(served, "g-allowed") == ["noted", "still here"]
    last_request = [m["content"] for m in fake_llm.requests[-1].body["messages"]]
    assert any("remember 7" in str(content) for content in last_request)


async def test_a_command_addressed_to_this_bot_still_works(served: EchoGatewayControl) -> None:
    served.inject_message("g-allowed", "/help@bot", sender_id=OWNER, chat_type="group", mentions_bot=True)
    await served.wait_for(sends("g-allowed"), within=10)  # type: ignore[arg-type]
    assert _texts(served, "g-allowed")[0].startswith("Send a message to talk to the agent.")


async def test_a_chat_that_is_not_allowed_is_warned_about_once(
    served: EchoGatewayControl, fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A busy group the bot is in but may not answer would otherwise fill the log."""
    fake_llm.enqueue(text("hi owner"))
    caplog.set_level(logging.DEBUG, logger="duragent")
    for n in range(3):
        served.inject_message("g-other", f"chatter {n}", sender_id=STRANGER, chat_type="group")
    # Handled after the chatter (one chat, in order): once answered, the chatter was judged.
    served.inject_message("g-other", "hi", sender_id=OWNER, chat_type="dm")
    await served.wait_for(sends("g-other"), within=10)  # type: ignore[arg-type]

    denied = [r for r in caplog.records if "denied message" in r.getMessage()]
    assert [r.levelno for r in denied] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
