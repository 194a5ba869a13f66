"""A photo whose artifact cannot be stored (a full disk, a store error) still brings its caption
to the agent: the message was dropped whole, and the user never got an answer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer, text
from duragent.testing.fake_telegram import FakeTelegramBotAPI
from tests.e2e.served_bot import ServedBot, init_chat_workspace, served_env

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

OWNER = 4242


async def test_the_caption_of_a_photo_the_store_refuses_reaches_the_agent_with_a_note(tmp_path: Path) -> None:
    async with FakeTelegramBotAPI() as telegram, FakeLLMServer() as llm:
        config_path = await asyncio.to_thread(
            init_chat_workspace, tmp_path / "home", "telegram", str(OWNER), telegram.api_base, llm, []
        )
        # A file where the agent's artifact folder belongs: every artifact write of it fails.
        artifacts = config_path.parent / ".duragent" / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "assistant").write_text("not a folder\n")
        (tmp_path / "logs").mkdir()
        bot = ServedBot(
            config=config_path,
            llm=llm,
            logs=tmp_path / "logs",
            env=served_env(TELEGRAM_BOT_TOKEN=telegram.token),
        )
        await bot.start()
        try:
            llm.enqueue(text("A cat, I am told."))
            asked = telegram.inject_photo(OWNER, b"\xff\xd8 a cat", OWNER, caption="what is in this picture?")

            reply = await telegram.wait_for_message(
                OWNER, lambda sent: sent.reply_to_message_id == asked["message_id"], within=30
            )
            request = await bot.wait_for_request("what is in this picture?")
            await bot.wait_for_log("could not be stored")
        finally:
            await bot.stop()

    assert reply.plain_text == "A cat, I am told."
    said = str(request.messages[-1]["content"])
    assert said.startswith("[photo photo-"), said
    assert "could not be stored" in said
    assert said.endswith("what is in this picture?")
    assert "a parent folder is already an artifact" in bot.log()
