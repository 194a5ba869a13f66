"""A code block longer than one Telegram message, through the plugin process and the fake Bot API.

Telegram trims the whitespace a message's text starts with, even in a code block: a piece that
begins with an indented line would lose that line's indentation. So pieces begin at a line that
is not indented wherever the window holds one, and no indentation is dropped on our side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.testing.fake_telegram import FakeTelegramBotAPI
from tests.integration.plugin_process import PluginProcess, start_ready_plugin

#: YAML without blank lines (nothing but line breaks to cut at), a top-level key every 5 lines.
CODE = "\n".join(
    line
    for n in range(90)
    for line in (
        f"step_{n}:",
        f"  description: step {n} adds the values up",
        "  values:",
        f"    - {n}",
        f"    - {n * 2}",
    )
)


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegramBotAPI]:
    async with FakeTelegramBotAPI() as server:
        yield server


@pytest.fixture
async def plugin(telegram: FakeTelegramBotAPI, tmp_path: Path) -> AsyncIterator[PluginProcess]:
    settings = {"bot_token": telegram.token, "api_base": telegram.api_base, "poll_timeout": 1}
    process = await start_ready_plugin(
        "duragent.plugins.telegram", settings, tmp_path, drop_env=("TELEGRAM_BOT_TOKEN",)
    )
    yield process
    await process.stop()


async def test_a_long_code_block_is_cut_before_unindented_lines_and_keeps_every_indent(
    telegram: FakeTelegramBotAPI, plugin: PluginProcess
) -> None:
    chat = 7001
    telegram.inject_message(chat_id=chat, text="show me the code", from_user=chat)
    assert len(CODE) > 4096

    answer = await plugin.request(
        {"type": "send_message", "chat_id": str(chat), "content": f"```yaml\n{CODE}\n```"}
    )

    assert answer["type"] == "command_ok"
    pieces = [m.plain_text for m in telegram.sent_messages(chat)]
    assert len(pieces) >= 2
    assert all(piece.startswith("step_") for piece in pieces)
    assert "\n".join(pieces) == CODE
