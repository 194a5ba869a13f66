"""What the Discord plugin's messages may ping: never the whole channel, whatever the agent writes.

An agent repeats what people ask it to ("say @everyone ..."); a bot usually holds the permission to
ping everyone (the default `@everyone` role grants it), so the plugin must not let its messages do it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.testing.fake_discord import FakeDiscord
from tests.integration.plugin_process import PluginProcess, start_ready_plugin


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.add_guild("Home")
        yield server


@pytest.fixture
async def plugin(discord: FakeDiscord, tmp_path: Path) -> AsyncIterator[PluginProcess]:
    settings = {"bot_token": discord.token, "api_base": discord.api_base}
    process = await start_ready_plugin(
        "duragent.plugins.discord", settings, tmp_path, drop_env=("DISCORD_BOT_TOKEN",)
    )
    yield process
    await process.stop()


async def test_a_reply_saying_everyone_or_here_pings_nobody(
    discord: FakeDiscord, plugin: PluginProcess
) -> None:
    channel = discord.add_channel(next(iter(discord._guilds)), "general")

    answer = await plugin.request(
        {"type": "send_message", "chat_id": channel, "content": "@everyone lunch is ready, @here too"}
    )

    assert answer["type"] == "command_ok"
    [sent] = discord.sent_messages(channel)
    assert sent.content == "@everyone lunch is ready, @here too"
    assert sent.mention_everyone is False
