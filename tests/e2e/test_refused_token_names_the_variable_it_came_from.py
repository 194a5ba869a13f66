"""A token the platform refuses is reported with the environment variable it came from.

`duragent init` writes `bot_token: ${TELEGRAM_BOT_TOKEN}`: the plugin only sees the value, so
its error named `bot_token` while the user had set TELEGRAM_BOT_TOKEN. The server knows the
reference and adds it, and the line of duragent.yaml holding it, to the error `duragent gateway
list` shows.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer
from duragent.testing.fake_telegram import FakeTelegramBotAPI
from tests.e2e.served_bot import PLUGIN_START_WITHIN, ServedBot, init_chat_workspace, served_env
from tests.e2e.server_harness import start_serve
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


async def test_a_refused_telegram_token_names_the_variable_it_came_from(tmp_path: Path) -> None:
    async with FakeTelegramBotAPI() as telegram, FakeLLMServer() as llm:
        config_path = await asyncio.to_thread(
            init_chat_workspace, tmp_path / "home", "telegram", "42", telegram.api_base, llm, []
        )
        (tmp_path / "logs").mkdir()
        wrong = "123456789:revoked-at-botfather"
        env = served_env(TELEGRAM_BOT_TOKEN=wrong)
        bot = ServedBot(config=config_path, llm=llm, logs=tmp_path / "logs", env=env)
        # Not `bot.start()`: it waits for a ready plugin, and this one never gets there.
        bot.starts += 1
        bot.server = await asyncio.to_thread(start_serve, config_path, bot.logs / "serve-1.log", env=env)
        try:

            async def failed() -> str | None:
                error = (await bot.gateway()).get("last_error")
                return str(error) if error else None

            error = await eventually(failed, within=PLUGIN_START_WITHIN, every=0.1)
        finally:
            await bot.stop()

    line = config_path.read_text().splitlines().index("        bot_token: ${TELEGRAM_BOT_TOKEN}") + 1
    assert f"`bot_token` (from TELEGRAM_BOT_TOKEN at {config_path}:{line})" in error, error
    assert "refused" in error
    assert wrong not in bot.log()
