"""Forum topics end to end: `duragent serve`, its Telegram plugin, the fake Bot API and fake LLM.

A forum supergroup's topics are conversations of their own: each gets its own session, the
group's allowlist entry admits them, and every answer goes to the topic it was asked in.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from duragent.testing.fake_llm import FakeLLMServer
from duragent.testing.fake_telegram import FakeTelegramBotAPI
from tests.e2e.telegram_bot import ALLOWED_GROUPS, OWNER, TelegramBot, create_workspace

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

REPLY_WITHIN = 20.0


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TelegramBot]:
    """`duragent serve` running the Telegram bot of a fresh `init --telegram` workspace."""
    async with FakeTelegramBotAPI() as telegram, FakeLLMServer() as llm:
        root = tmp_path_factory.mktemp("telegram-topics")
        config = await asyncio.to_thread(create_workspace, root / "home", telegram, llm)
        served = TelegramBot.for_workspace(config, root, telegram, llm)
        await served.start()
        yield served
        await served.stop()


async def test_each_forum_topic_is_answered_in_itself_with_a_session_of_its_own(bot: TelegramBot) -> None:
    group, plans, lunch = ALLOWED_GROUPS[0], 11, 12
    telegram = bot.telegram

    asked = telegram.inject_message(
        group, "@duragent_test_bot what is the plan?", OWNER, chat_type="supergroup", message_thread_id=plans
    )
    answer = await telegram.wait_for_message(
        group, lambda m: "what is the plan?" in m.plain_text, REPLY_WITHIN
    )
    telegram.inject_message(
        group, "@duragent_test_bot and lunch?", OWNER, chat_type="supergroup", message_thread_id=lunch
    )
    other = await telegram.wait_for_message(group, lambda m: "and lunch?" in m.plain_text, REPLY_WITHIN)
    plans_session = await _status_session(telegram, group, plans)
    lunch_session = await _status_session(telegram, group, lunch)

    assert answer.message_thread_id == plans
    assert other.message_thread_id == lunch
    [lunch_request] = bot.requests_mentioning("and lunch?")
    assert "what is the plan?" not in str(lunch_request.messages)  # the topics' talk is kept apart
    assert answer.reply_to_message_id == asked["message_id"]
    assert plans_session != lunch_session


async def _status_session(telegram: FakeTelegramBotAPI, group: int, topic: int) -> str:
    """Ask `/status` in one topic; the session id named in the answer, which must be in that topic."""
    before = len(telegram.sent_messages(group))
    telegram.inject_message(
        group, "/status@duragent_test_bot", OWNER, chat_type="supergroup", message_thread_id=topic
    )
    answer = await telegram.wait_for_message(
        group,
        lambda m: m in telegram.sent_messages(group)[before:] and "Session:" in m.plain_text,
        REPLY_WITHIN,
    )
    assert answer.message_thread_id == topic
    found = re.search(r"Session: (\S+)", answer.plain_text)
    assert found, answer.plain_text
    return found.group(1)
