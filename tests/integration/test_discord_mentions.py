"""What the Discord plugin's messages may ping: never the whole channel, whatever the agent writes.

An agent repeats what people ask it to ("say @everyone ..."); a bot usually holds the permission to
ping everyone (the default `@everyone` role grants it), so the plugin must not let its messages do it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.testing.fake_discord import FakeDiscord
from tests.integration.plugin_process import PluginProcess, received_in, start_ready_plugin


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


async def test_mentioning_the_bots_own_role_counts_as_mentioning_the_bot(
    discord: FakeDiscord, plugin: PluginProcess
) -> None:
    # Typing "@duragent-test" offers the bot and its role of the same name; people pick either.
    guild = next(iter(discord._guilds))
    channel = discord.add_channel(guild, "general")
    ada = discord.add_user("ada")

    discord.inject_message(channel, f"{discord.role_mention(guild)} what time is it?", author=ada)

    event = await plugin.event(received_in(channel))
    assert event["mentions_bot"] is True
    assert event["content"]["text"] == "@duragent-test what time is it?"


async def test_people_mentioned_in_a_message_reach_the_agent_by_name(
    discord: FakeDiscord, plugin: PluginProcess
) -> None:
    guild = next(iter(discord._guilds))
    channel = discord.add_channel(guild, "general")
    ada = discord.add_user("ada")
    bea = discord.add_user("bea", "Bea Smith")

    discord.inject_message(
        channel, f"{discord.mention} ask <@{bea['id']}> what <@!{bea['id']}> thinks", author=ada
    )

    event = await plugin.event(received_in(channel))
    assert event["content"]["text"] == "@duragent-test ask @Bea Smith what @Bea Smith thinks"
