"""A bot token handed to the plugin through the gateway's `env:` is reported by the variable
the user set, and where.

With `env: {TELEGRAM_BOT_TOKEN: ${HOME_BOT_TOKEN}}` the plugin only sees TELEGRAM_BOT_TOKEN: its
error named that variable, which the user never set, instead of HOME_BOT_TOKEN in duragent.yaml.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer
from duragent.testing.fake_telegram import FakeTelegramBotAPI
from tests.e2e.served_bot import PLUGIN_START_WITHIN, ServedBot, edit_file, init_chat_workspace, served_env
from tests.e2e.server_harness import start_serve
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


async def last_error_of_a_bot_that_cannot_start(config_path: Path, logs: Path, env: dict[str, str]) -> str:
    """Serve `config_path` and wait for the Telegram plugin's startup error."""
    async with FakeLLMServer() as llm:
        bot = ServedBot(config=config_path, llm=llm, logs=logs, env=env)
        # Not `bot.start()`: it waits for a ready plugin, and this one never gets there.
        bot.starts += 1
        bot.server = await asyncio.to_thread(start_serve, config_path, logs / "serve-1.log", env=env)
        try:

            async def failed() -> str | None:
                error = (await bot.gateway()).get("last_error")
                return str(error) if error else None

            return await eventually(failed, within=PLUGIN_START_WITHIN, every=0.1)
        finally:
            await bot.stop()


@pytest.mark.parametrize(
    ("token", "says"),
    [("123456789:revoked-at-botfather", "refused"), ("not-a-token", "is not a bot token")],
)
async def test_a_token_from_the_gateways_env_is_reported_by_the_variable_the_user_set(
    tmp_path: Path, token: str, says: str
) -> None:
    async with FakeTelegramBotAPI() as telegram, FakeLLMServer() as llm:
        config_path = await asyncio.to_thread(
            init_chat_workspace, tmp_path / "home", "telegram", "42", telegram.api_base, llm, []
        )
        edit_file(
            config_path,
            "      config:\n        api_base",
            "      env:\n        TELEGRAM_BOT_TOKEN: ${HOME_BOT_TOKEN}\n      config:\n        api_base",
        )
        edit_file(config_path, "      restart: always\n", "      restart: never\n")
        edit_file(
            config_path,
            f"{telegram.api_base}\n        bot_token: ${{TELEGRAM_BOT_TOKEN}}\n",
            f"{telegram.api_base}\n",
        )
        line = config_path.read_text().splitlines().index("        TELEGRAM_BOT_TOKEN: ${HOME_BOT_TOKEN}") + 1
        (tmp_path / "logs").mkdir()
        env = served_env(HOME_BOT_TOKEN=token)

        error = await last_error_of_a_bot_that_cannot_start(config_path, tmp_path / "logs", env)

    assert says in error, error
    assert f"`TELEGRAM_BOT_TOKEN` (from HOME_BOT_TOKEN, in `env:` at {config_path}:{line})" in error, error
