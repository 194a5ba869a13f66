"""A message the Discord or Slack plugin is still passing on when it is stopped is not lost.

Discord will not send it again (the session ends with the plugin) and Slack was already told it
arrived: the plugin finishes passing it on, file and all, before it exits (Duragent keeps it in
pending.json until a session stores it). Real plugin subprocesses against the fakes, with a file
that takes a moment to download.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from duragent.testing.fake_discord import FakeDiscord
from duragent.testing.fake_slack import FakeSlack
from tests.integration.plugin_process import received_in, start_ready_plugin

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

DOWNLOAD_SECONDS = 1.0


async def test_discord_a_photo_downloading_as_the_plugin_stops_is_still_passed_on(tmp_path: Path) -> None:
    async with FakeDiscord() as discord:
        room = discord.add_channel(discord.add_guild("Home"), "general")
        ada = discord.add_user("ada")
        # A folder of our own: the plugin removes its private one as it exits.
        downloads = tmp_path / "downloads"
        settings = {"bot_token": discord.token, "api_base": discord.api_base, "download_dir": str(downloads)}
        plugin = await start_ready_plugin(
            "duragent.plugins.discord", settings, tmp_path, drop_env=("DISCORD_BOT_TOKEN",)
        )
        discord.download_delay = DOWNLOAD_SECONDS
        try:
            discord.inject_message(
                room, "my cat", author=ada, attachments=[("cat.png", b"\x89PNG cat", "image/png")]
            )
            await discord.wait_until(lambda: discord.downloads or None, within=30)
        finally:
            code = await plugin.stop()
        photo = await plugin.event(received_in(room))

    assert photo["content"] == {"type": "media", "media_type": "photo", "caption": "my cat"}
    assert Path(photo["metadata"]["file_path"]).parent == downloads
    assert await asyncio.to_thread(Path(photo["metadata"]["file_path"]).read_bytes) == b"\x89PNG cat"
    assert code == 0


async def test_slack_a_photo_downloading_as_the_plugin_stops_is_still_passed_on(tmp_path: Path) -> None:
    async with FakeSlack() as slack:
        room = slack.add_channel("general")
        ada = slack.add_user("ada")
        downloads = tmp_path / "downloads"
        settings = {
            "bot_token": slack.bot_token,
            "app_token": slack.app_token,
            "api_base": slack.api_base,
            "download_dir": str(downloads),
        }
        plugin = await start_ready_plugin(
            "duragent.plugins.slack",
            settings,
            tmp_path,
            drop_env=("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"),
        )
        slack.download_delay = DOWNLOAD_SECONDS
        try:
            slack.inject_message(room, "my cat", user=ada, files=[("cat.png", b"\x89PNG cat", "image/png")])
            await slack.wait_until(lambda: slack.downloads or None, within=30)
        finally:
            code = await plugin.stop()
        photo = await plugin.event(received_in(room))

    assert photo["content"] == {"type": "media", "media_type": "photo", "caption": "my cat"}
    assert Path(photo["metadata"]["file_path"]).parent == downloads
    assert await asyncio.to_thread(Path(photo["metadata"]["file_path"]).read_bytes) == b"\x89PNG cat"
    assert code == 0
