"""Messages the bot takes from Telegram while the server stops, or holds for later, survive it.

The plugin confirms each update to Telegram (the getUpdates offset) as soon as it passed it on.
While `duragent serve` stops, running turns get a grace period and the plugin keeps polling
meanwhile: what it passes on then must reach no closing session, it is kept in
`<data_dir>/gateways/pending.json` and answered after the restart. Group talk that does not
address the bot, held as context while the chat's session is busy, is kept there too.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest

from duragent.testing.fake_llm import FakeLLMServer, delay, text
from duragent.testing.fake_telegram import FakeTelegramBotAPI
from tests.e2e.telegram_bot import ALLOWED_GROUPS, OWNER, TelegramBot, create_workspace
from tests.waiting import until

pytestmark = [pytest.mark.slow]

BOT_USERNAME = "duragent_test_bot"
BEA = {"id": 3003, "first_name": "Bea"}
REPLY_WITHIN = 30.0


@pytest.fixture
async def bot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TelegramBot]:
    async with FakeTelegramBotAPI(bot_username=BOT_USERNAME) as telegram, FakeLLMServer() as llm:
        root = tmp_path_factory.mktemp("telegram-stop")
        config = await asyncio.to_thread(create_workspace, root / "home", telegram, llm)
        served = TelegramBot.for_workspace(config, root, telegram, llm)
        await served.start()
        yield served
        if served.server is not None:
            await served.stop()


async def passed_on(bot: TelegramBot, polls: int) -> None:
    """Wait until the plugin passed every update on and confirmed it: Telegram forgot them."""
    await until(
        lambda: bot.telegram.pending_updates == 0 and len(bot.telegram.calls_to("getUpdates")) >= polls + 2,
        within=REPLY_WITHIN,
    )


def said_to_model(bot: TelegramBot, marker: str) -> str:
    """Everything the users said in the first model request mentioning `marker`."""
    [request, *_] = bot.requests_mentioning(marker)
    return "\n".join(str(m.get("content")) for m in request.messages if m.get("role") == "user")


async def test_messages_arriving_while_the_server_stops_are_answered_after_the_restart(
    bot: TelegramBot,
) -> None:
    group = ALLOWED_GROUPS[0]
    # A turn that is still running when the stop comes keeps the server stopping for its grace.
    bot.llm.enqueue(delay(60, then=text("too late")))
    bot.telegram.inject_message(OWNER["id"], "start the long report", from_user=OWNER)
    await bot.wait_for_request("start the long report")
    assert bot.server is not None
    server = bot.server
    server.process.send_signal(signal.SIGTERM)
    await bot.wait_for_log("duragent serve: stopping")

    polls = len(bot.telegram.calls_to("getUpdates"))
    asked = bot.telegram.inject_message(OWNER["id"], "note the locker code 4471", from_user=OWNER)
    bot.telegram.inject_message(group, "the van leaves at dawn", from_user=BEA, chat_type="group")
    bot.telegram.inject_message(OWNER["id"], "/status", from_user=OWNER)
    await passed_on(bot, polls)
    # a command needing the session is not held: it is answered at once
    await bot.telegram.wait_for_message(OWNER["id"], lambda m: "restarting" in m.plain_text)
    assert await asyncio.to_thread(server.process.wait, 30) == 0
    bot.server = None

    await bot.start()
    reply = await bot.telegram.wait_for_message(
        OWNER["id"], lambda m: m.reply_to_message_id == asked["message_id"], within=REPLY_WITHIN
    )
    assert reply.plain_text == "echo: note the locker code 4471"
    bot.telegram.inject_message(
        group, f"@{BOT_USERNAME} when does the van leave?", from_user=OWNER, chat_type="group"
    )
    await bot.wait_for_request("when does the van leave?")
    assert "Bea: the van leaves at dawn" in said_to_model(bot, "when does the van leave?")


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_group_talk_held_while_a_turn_runs_is_context_after_a_restart(
    bot: TelegramBot, how: str
) -> None:
    group = ALLOWED_GROUPS[1]
    bot.llm.enqueue(delay(60, then=text("too late")))
    bot.telegram.inject_message(group, f"@{BOT_USERNAME} draft the plan", from_user=OWNER, chat_type="group")
    await bot.wait_for_request("draft the plan")
    polls = len(bot.telegram.calls_to("getUpdates"))
    bot.telegram.inject_message(group, "the budget is 900 euros", from_user=BEA, chat_type="group")
    await passed_on(bot, polls)

    await (bot.stop() if how == "stop" else bot.kill())
    await bot.start()

    bot.telegram.inject_message(
        group, f"@{BOT_USERNAME} what is the budget?", from_user=OWNER, chat_type="group"
    )
    await bot.wait_for_request("what is the budget?")
    assert "Bea: the budget is 900 euros" in said_to_model(bot, "what is the budget?")


async def test_a_message_answered_just_before_a_crash_is_not_answered_again(bot: TelegramBot) -> None:
    pending = bot.config.parent / ".duragent" / "gateways" / "pending.json"

    def held() -> str:
        text = pending.read_text() if pending.exists() else ""
        return text if "what is 6 times 7?" in text else ""

    asked = bot.telegram.inject_message(OWNER["id"], "what is 6 times 7?", from_user=OWNER)
    await until(held, within=REPLY_WITHIN)  # its debounce window
    while_waiting = held()
    await bot.telegram.wait_for_message(
        OWNER["id"], lambda m: m.reply_to_message_id == asked["message_id"], within=REPLY_WITHIN
    )
    # Its entry leaves pending.json once its session stored it, in a write not flushed to the
    # disk: a crash of the machine can bring the entry back, as written here.
    await until(lambda: not held(), within=REPLY_WITHIN)
    await bot.kill()
    pending.write_text(while_waiting)
    await bot.start()
    later = bot.telegram.inject_message(OWNER["id"], "and 7 times 8?", from_user=OWNER)
    await bot.telegram.wait_for_message(
        OWNER["id"], lambda m: m.reply_to_message_id == later["message_id"], within=REPLY_WITHIN
    )

    asking = [r for r in bot.llm.requests if "what is 6 times 7?" in str(r.messages[-1].get("content"))]
    assert len(asking) == 1
    assert "received before the restart" not in bot.log()
    replies = [
        m for m in bot.telegram.sent_messages(OWNER["id"]) if m.reply_to_message_id == asked["message_id"]
    ]
    assert len(replies) == 1
    assert "what is 6 times 7?" not in pending.read_text()
