"""A long reply posted to Slack in pieces keeps its bold and strikethrough on both sides of each
cut: the Markdown is cut (closing and reopening `**` and `~~`), then each piece converted to
mrkdwn, so no piece shows a lone `*` or `~` and none runs past Slack's section limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from duragent.testing.fake_slack import SECTION_TEXT_LIMIT, FakeSlack
from tests.integration.plugin_process import start_ready_plugin


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


async def test_bold_and_strikethrough_cut_in_two_show_as_formatting_in_both_pieces(
    slack: FakeSlack, tmp_path: Path
) -> None:
    channel = slack.add_channel("room")
    important, gone = ("important " * 400).strip(), ("gone " * 800).strip()
    reply = "Intro & outline " * 150 + f"**{important}** then ~~{gone}~~ end."
    settings = {"bot_token": slack.bot_token, "app_token": slack.app_token, "api_base": slack.api_base}
    drop = ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET")
    plugin = await start_ready_plugin("duragent.plugins.slack", settings, tmp_path, drop_env=drop)
    try:
        await plugin.request({"type": "send_message", "chat_id": channel, "content": reply})
    finally:
        await plugin.stop()

    pieces = [piece.text for piece in slack.sent_messages(channel)]
    assert all(len(piece) <= SECTION_TEXT_LIMIT for piece in pieces)
    bold = [piece[piece.index("important") - 1 :] for piece in pieces if "important" in piece]
    struck = [piece[piece.index("gone") - 1 :] for piece in pieces if "gone" in piece]
    assert len(bold) >= 2
    assert len(struck) >= 2
    assert all(piece.startswith("*important") and "important*" in piece for piece in bold)
    assert all(piece.startswith("~gone") and "gone~" in piece for piece in struck)
    assert " ".join(pieces).replace("*", "").replace("~", "").split() == (
        reply.replace("**", "").replace("~~", "").replace("&", "&amp;").split()
    )
