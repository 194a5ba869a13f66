"""Gateway follow-ups at the plugin level: real plugin subprocesses against the fake platforms.

- A Discord attachment over `max_download_mb` is not fetched: discord.py holds a file in memory
  while it saves it, so one huge attachment could take the plugin's memory. The event says why
  the file did not come (the router tells the sender).
- A media caption too long for one message used to be cut by slicing: on Slack inside an
  `&amp;` entity, on Discord dropping the link it was posted with. It is cut like a reply now,
  and nothing is lost.
- A Telegram token revoked while the bot runs stops it with an error naming where it is set.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from duragent.testing.fake_discord import FakeDiscord
from duragent.testing.fake_slack import FakeSlack
from duragent.testing.fake_telegram import FakeTelegramBotAPI
from tests.integration.plugin_process import (
    READY_WITHIN,
    received_in,
    start_plugin_process,
    start_ready_plugin,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def test_discord_an_attachment_over_the_limit_is_not_downloaded(tmp_path: Path) -> None:
    async with FakeDiscord() as discord:
        ada = discord.add_user("ada")
        dm = discord.dm_channel(ada)
        settings = {
            "bot_token": discord.token,
            "api_base": discord.api_base,
            "download_dir": str(tmp_path / "downloads"),
            "max_download_mb": 1,
        }
        plugin = await start_ready_plugin(
            "duragent.plugins.discord", settings, tmp_path, drop_env=("DISCORD_BOT_TOKEN",)
        )
        try:
            big = b"\0" * (3 << 20)
            discord.inject_message(
                dm, "the backup", author=ada, attachments=[("backup.tar", big, "application/x-tar")]
            )
            discord.inject_message(
                dm, "the notes", author=ada, attachments=[("notes.txt", b"buy milk", "text/plain")]
            )
            refused = await plugin.event(received_in(dm), within=30)
            taken = await plugin.event(received_in(dm), within=30)
        finally:
            await plugin.stop()

    assert refused["content"]["caption"] == "the backup"
    assert refused["metadata"]["download_error"] == (
        "the file is 3.0 MB, over the 1 MB limit (`max_download_mb`)"
    )
    assert "file_path" not in refused["metadata"]
    assert discord.downloads == ["notes.txt"]
    assert await asyncio.to_thread(Path(taken["metadata"]["file_path"]).read_bytes) == b"buy milk"


async def test_slack_a_long_caption_is_cut_between_entities_and_kept_whole(tmp_path: Path) -> None:
    caption = "Q&A " * 900  # 3,600 characters: `&amp;` makes 5,400 in mrkdwn
    async with FakeSlack() as slack:
        room = slack.add_channel("general")
        settings = {"bot_token": slack.bot_token, "app_token": slack.app_token, "api_base": slack.api_base}
        drop = ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET")
        plugin = await start_ready_plugin("duragent.plugins.slack", settings, tmp_path, drop_env=drop)
        try:
            picture = base64.b64encode(b"\x89PNG fake").decode()
            await plugin.request(
                {
                    "type": "send_media",
                    "chat_id": room,
                    "media": {
                        "source": "base64",
                        "data": picture,
                        "mime_type": "image/png",
                        "filename": "qa.png",
                    },
                    "caption": caption,
                },
                within=30,
            )
        finally:
            await plugin.stop()

    *before, upload = slack.sent_messages(room)
    assert upload.files == [("qa.png", b"\x89PNG fake")]
    texts = [message.text for message in [*before, upload]]
    assert all(len(text) <= 3000 and text.endswith("Q&amp;A") for text in texts), texts
    assert " ".join(texts).count("Q&amp;A") == 900


async def test_discord_a_long_caption_keeps_its_link_and_every_word(tmp_path: Path) -> None:
    caption = "word " * 500  # 2,500 characters
    async with FakeDiscord() as discord:
        dm = discord.dm_channel(discord.add_user("ada"))
        settings = {"bot_token": discord.token, "api_base": discord.api_base}
        plugin = await start_ready_plugin(
            "duragent.plugins.discord", settings, tmp_path, drop_env=("DISCORD_BOT_TOKEN",)
        )
        try:
            await plugin.request(
                {
                    "type": "send_media",
                    "chat_id": dm,
                    "media": {"source": "url", "url": "https://example.test/report.pdf"},
                    "caption": caption,
                },
                within=30,
            )
        finally:
            await plugin.stop()

    texts = [message.content for message in discord.sent_messages(dm)]
    assert all(len(text) <= 2000 for text in texts), [len(text) for text in texts]
    assert texts[-1].endswith("\nhttps://example.test/report.pdf")
    assert " ".join(texts).split().count("word") == 500


async def test_telegram_token_revoked_while_running_stops_the_plugin_naming_where_it_is_set(
    tmp_path: Path,
) -> None:
    async with FakeTelegramBotAPI() as telegram:
        config = {"bot_token": telegram.token, "api_base": telegram.api_base, "poll_timeout": 1}
        process = await start_plugin_process(
            "duragent.plugins.telegram", config, tmp_path, drop_env=("TELEGRAM_BOT_TOKEN",)
        )
        await process.event("ready", within=READY_WITHIN)

        telegram.token = "123456789:new-from-botfather"  # /revoke: the old one no longer works
        fatal = await process.event("error", within=30)
        code = await process.stop()

    assert fatal["fatal"] is True
    assert fatal["code"] == "unauthorized"
    assert "refused the bot token in `bot_token`" in fatal["message"]
    assert code == 0
