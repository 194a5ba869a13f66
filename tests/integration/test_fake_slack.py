"""The fake Slack answers like Slack: Web API errors and limits, Socket Mode envelopes, `python -m`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest

from duragent.testing.fake_slack import (
    DEFAULT_APP_TOKEN,
    DEFAULT_BOT_TOKEN,
    SECTION_TEXT_LIMIT,
    TEXT_LIMIT,
    FakeSlack,
)
from tests.integration.console_process import ConsoleProcess, dm_and_press
from tests.integration.plugin_process import start_ready_plugin


async def _call(
    http: aiohttp.ClientSession, slack: FakeSlack, method: str, token: str, **body: object
) -> dict:
    async with http.post(
        f"{slack.api_base}{method}", json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        answer: dict = await response.json()
        return answer


async def test_web_api_checks_tokens_channels_and_slacks_text_and_block_limits(fake_slack: FakeSlack) -> None:
    channel = fake_slack.add_channel("general")
    bot = fake_slack.bot_token
    async with aiohttp.ClientSession() as http:
        wrong = await _call(http, fake_slack, "chat.postMessage", "xoxb-nope", channel=channel, text="hi")
        app_token_for_chat = await _call(
            http, fake_slack, "chat.postMessage", fake_slack.app_token, channel=channel
        )
        unknown = await _call(http, fake_slack, "chat.postMessage", bot, channel="C0NOPE", text="hi")
        too_long = await _call(
            http, fake_slack, "chat.postMessage", bot, channel=channel, text="x" * (TEXT_LIMIT + 1)
        )
        section = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * (SECTION_TEXT_LIMIT + 1)}}
        bad_blocks = await _call(
            http, fake_slack, "chat.postMessage", bot, channel=channel, text="t", blocks=[section]
        )
        ok = await _call(http, fake_slack, "chat.postMessage", bot, channel=channel, text="fits")

    assert wrong == {"ok": False, "error": "invalid_auth"}
    assert app_token_for_chat["error"] == "invalid_auth"
    assert unknown["error"] == "channel_not_found"
    assert too_long["error"] == "msg_too_long"
    assert bad_blocks["error"] == "invalid_blocks"
    assert ok["ok"] is True
    assert [m.text for m in fake_slack.sent_messages(channel)] == ["fits"]


async def test_socket_mode_sends_hello_then_envelopes_until_they_are_acknowledged(
    fake_slack: FakeSlack,
) -> None:
    ada = fake_slack.add_user("ada")
    dm = fake_slack.dm_channel(ada)
    fake_slack.inject_message(dm, "hello", user=ada)
    async with aiohttp.ClientSession() as http:
        opened = await _call(http, fake_slack, "apps.connections.open", fake_slack.app_token)
        async with http.ws_connect(opened["url"]) as first:
            hello = await first.receive_json()
            envelope = await first.receive_json()
        async with http.ws_connect(opened["url"]) as second:  # not acknowledged: sent again
            await second.receive_json()
            again = await second.receive_json()
            await second.send_json({"envelope_id": again["envelope_id"]})
            await fake_slack.wait_until(lambda: fake_slack.unacked == 0 or None)

    assert hello["type"] == "hello"
    assert envelope["type"] == "events_api"
    assert envelope["payload"]["event"]["text"] == "hello"
    assert envelope["payload"]["event"]["channel_type"] == "im"
    assert again["envelope_id"] == envelope["envelope_id"]
    assert again["retry_attempt"] == 1
    assert fake_slack.acked == [envelope["envelope_id"]]


async def test_python_m_serves_a_fake_slack_until_interrupted() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "duragent.testing.fake_slack", "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        api_base = first.split("api_base ")[1].split(",")[0]
        async with aiohttp.ClientSession() as http, http.post(f"{api_base}auth.test") as response:
            answer = await response.json()
    finally:
        process.terminate()
        code = await process.wait()

    assert answer == {"ok": False, "error": "invalid_auth"}
    assert code == 0


@pytest.mark.slow
async def test_python_m_with_user_lets_a_person_dm_the_real_plugin_and_press_its_buttons(
    tmp_path: Path,
) -> None:
    """`python -m duragent.testing.fake_slack --user ID`: what is typed reaches the Slack plugin
    (unmodified Bolt, over Socket Mode) as that member's direct message, the app's messages are
    printed with their buttons numbered, `/press N` presses one and its ephemeral answer is shown."""
    owner = "U0123ABCD"
    console = await ConsoleProcess.start("duragent.testing.fake_slack", "--port", "0", "--user", owner)
    try:
        first = await console.printed_line("fake Slack: api_base")
        you = await console.printed_line("you are member")
        api_base = first.split("api_base ")[1].split(",")[0]
        settings = {"bot_token": DEFAULT_BOT_TOKEN, "app_token": DEFAULT_APP_TOKEN, "api_base": api_base}
        plugin = await start_ready_plugin(
            "duragent.plugins.slack",
            settings,
            tmp_path,
            drop_env=("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"),
        )
        try:
            seen = await dm_and_press(console, plugin, "hello app")
        finally:
            await plugin.stop()
    finally:
        code = await console.stop()

    assert f"--slack-owner {owner}" in you
    received, pressed = seen.received, seen.pressed
    assert received["content"] == {"type": "text", "text": "hello app"}
    assert received["routing"]["chat_type"] == "dm"
    assert received["sender"]["id"] == received["routing"]["sender_id"] == owner
    assert "bot: May I run *ls*?\n" in console.printed
    assert "(/press N)" in seen.buttons
    assert pressed["data"] == "approve:c1:allow_once"
    assert pressed["sender"]["id"] == owner
    assert seen.answer == "bot (only visible to you): Running\n"
    assert code == 0
