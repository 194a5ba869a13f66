"""Discord and Slack plugins pass one chat's messages on in the order they were sent.

Both platform libraries run each incoming event in a task of its own: without care, a text sent
right after a photo overtakes the photo while its file is still downloading, and the agent reads
"what is in this picture?" before the picture. Real plugin subprocesses against the fakes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from duragent.testing.fake_discord import FakeDiscord
from duragent.testing.fake_slack import FakeSlack
from tests.integration.plugin_process import PluginProcess, start_ready_plugin

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

#: Long enough that a text sent after the photo would surely be forwarded first if let.
DOWNLOAD_SECONDS = 1.5


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.add_guild("Home")
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def discord_plugin(
    discord: FakeDiscord, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PluginProcess]:
    settings = {"bot_token": discord.token, "api_base": discord.api_base}
    process = await start_ready_plugin(
        "duragent.plugins.discord",
        settings,
        tmp_path_factory.mktemp("discord-order"),
        drop_env=("DISCORD_BOT_TOKEN",),
    )
    yield process
    await process.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def slack_plugin(
    slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PluginProcess]:
    settings = {"bot_token": slack.bot_token, "app_token": slack.app_token, "api_base": slack.api_base}
    process = await start_ready_plugin(
        "duragent.plugins.slack",
        settings,
        tmp_path_factory.mktemp("slack-order"),
        drop_env=("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"),
    )
    yield process
    await process.stop()


async def received_in_order(
    plugin: PluginProcess, chats: tuple[str, ...], count: int
) -> list[dict[str, Any]]:
    """The next `count` messages received in `chats`, in the order the plugin passed them on."""

    def in_chats(event: dict[str, Any]) -> bool:
        return event["type"] == "message_received" and event["chat_id"] in chats

    return [await plugin.event(in_chats, within=15) for _ in range(count)]


async def test_discord_a_text_sent_after_a_photo_does_not_overtake_it(
    discord: FakeDiscord, discord_plugin: PluginProcess
) -> None:
    ada = discord.add_user("ada", "Ada Lovelace")
    channel = discord.add_channel(next(iter(discord._guilds)), "photos")
    other = discord.add_channel(next(iter(discord._guilds)), "chatter")
    discord.download_delay = DOWNLOAD_SECONDS
    try:
        discord.inject_message(
            channel, "", author=ada, attachments=[("cat.png", b"\x89PNG cat", "image/png")]
        )
        discord.inject_message(channel, "what is in this picture?", author=ada)
        discord.inject_message(other, "meanwhile, elsewhere", author=ada)

        arrived = await received_in_order(discord_plugin, (channel, other), count=3)
    finally:
        discord.download_delay = 0.0

    # Another chat is not held up by this one's download.
    assert [event["chat_id"] for event in arrived] == [other, channel, channel]
    _, photo, question = arrived
    assert photo["content"]["type"] == "media"
    assert await asyncio.to_thread(Path(photo["metadata"]["file_path"]).read_bytes) == b"\x89PNG cat"
    assert question["content"] == {"type": "text", "text": "what is in this picture?"}


async def test_slack_a_text_sent_after_a_photo_does_not_overtake_it(
    slack: FakeSlack, slack_plugin: PluginProcess
) -> None:
    ada: dict[str, Any] = slack.add_user("ada", "Ada Lovelace")
    channel = slack.add_channel("photos")
    other = slack.add_channel("chatter")
    slack.download_delay = DOWNLOAD_SECONDS
    try:
        slack.inject_message(channel, "", user=ada, files=[("cat.png", b"\x89PNG cat", "image/png")])
        slack.inject_message(channel, "what is in this picture?", user=ada)
        slack.inject_message(other, "meanwhile, elsewhere", user=ada)

        arrived = await received_in_order(slack_plugin, (channel, other), count=3)
    finally:
        slack.download_delay = 0.0

    assert [event["chat_id"] for event in arrived] == [other, channel, channel]
    _, photo, question = arrived
    assert photo["content"]["type"] == "media"
    assert await asyncio.to_thread(Path(photo["metadata"]["file_path"]).read_bytes) == b"\x89PNG cat"
    assert question["content"] == {"type": "text", "text": "what is in this picture?"}
