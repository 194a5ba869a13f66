"""A message the bot took from Telegram is answered even if the server restarts before its turn.

The plugin confirms each update to Telegram (the getUpdates offset) as soon as it passed it on,
and Telegram then forgets it; the server holds it for the debounce window before the turn starts.
A restart in that window must not lose it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from duragent.testing.fake_llm import FakeLLMServer
from duragent.testing.fake_telegram import FakeTelegramBotAPI
from tests.e2e.served_bot import edit_file
from tests.e2e.telegram_bot import OWNER, TelegramBot, create_workspace
from tests.waiting import until

pytestmark = [pytest.mark.slow]

REPLY_WITHIN = 30.0


@pytest.fixture
async def bot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TelegramBot]:
    """A bot whose debounce window is long enough to restart the server inside it."""
    async with FakeTelegramBotAPI() as telegram, FakeLLMServer() as llm:
        root = tmp_path_factory.mktemp("telegram-restart")
        config = await asyncio.to_thread(create_workspace, root / "home", telegram, llm)
        agent = config.parent / ".duragent" / "agents" / "assistant" / "agent.yaml"
        edit_file(agent, "debounce: 200ms", "debounce: 20s")
        served = TelegramBot.for_workspace(config, root, telegram, llm)
        await served.start()
        yield served
        if served.server is not None:
            await served.stop()


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_a_message_waiting_out_the_debounce_window_is_answered_after_a_restart(
    bot: TelegramBot, how: str
) -> None:
    polls = len(bot.telegram.calls_to("getUpdates"))
    asked = bot.telegram.inject_message(OWNER["id"], "note the parcel number 8812", from_user=OWNER)
    # The plugin passed it on and confirmed it (two long polls later): Telegram forgot it.
    await until(
        lambda: bot.telegram.pending_updates == 0 and len(bot.telegram.calls_to("getUpdates")) >= polls + 2
    )

    await (bot.stop() if how == "stop" else bot.kill())
    await bot.start()

    reply = await bot.telegram.wait_for_message(
        OWNER["id"], lambda m: m.reply_to_message_id == asked["message_id"], within=REPLY_WITHIN
    )
    assert reply.plain_text == "echo: note the parcel number 8812"
    assert len(bot.requests_mentioning("note the parcel number 8812")) == 1
