"""A message forwarded to the Discord bot reaches the agent with what was forwarded.

Discord sends a forward with empty `content`: the text and files are in a snapshot of the
original message. Without reading it, the plugin saw "nothing to read" and dropped the message.
A real plugin subprocess against the fake Discord.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from duragent.testing.fake_discord import FakeDiscord
from tests.integration.plugin_process import received_in, start_ready_plugin

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def test_discord_a_forwarded_message_arrives_with_its_text_and_file(tmp_path: Path) -> None:
    async with FakeDiscord() as discord:
        room = discord.add_channel(discord.add_guild("Home"), "general")
        ada = discord.add_user("ada")
        grace = discord.add_user("grace")
        dm = discord.dm_channel(ada)
        downloads = tmp_path / "downloads"  # not the private folder the plugin removes as it exits
        settings = {"bot_token": discord.token, "api_base": discord.api_base, "download_dir": str(downloads)}
        plugin = await start_ready_plugin(
            "duragent.plugins.discord", settings, tmp_path, drop_env=("DISCORD_BOT_TOKEN",)
        )
        try:
            plain = discord.inject_message(room, "standup moved to 10:30", author=grace)
            with_file = discord.inject_message(
                room, "the agenda", author=grace, attachments=[("agenda.txt", b"1. coffee", "text/plain")]
            )
            discord.inject_message(dm, "", author=ada, forward_of=plain)
            discord.inject_message(dm, "", author=ada, forward_of=with_file)

            text = await plugin.event(received_in(dm), within=30)
            document = await plugin.event(received_in(dm), within=30)
        finally:
            await plugin.stop()

    assert text["content"] == {"type": "text", "text": "[forwarded message]\nstandup moved to 10:30"}
    assert text.get("reply_to") is None
    assert document["content"] == {
        "type": "media",
        "media_type": "document",
        "caption": "[forwarded message]\nthe agenda",
    }
    assert await asyncio.to_thread(Path(document["metadata"]["file_path"]).read_bytes) == b"1. coffee"
