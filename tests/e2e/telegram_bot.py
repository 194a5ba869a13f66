"""A Telegram bot as a user runs it: `duragent init --telegram`, then `duragent serve` as a real
process, with its plugin talking to the fake Bot API and its agent to the fake LLM.

`TelegramBot` owns the workspace and the server process; tests talk to the bot through the
fake Bot API (`inject_message`, `wait_for_message`) and read the server's state through its admin
API. Starting a server costs seconds (the plugin imports aiogram), so a test module shares one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from duragent.testing.fake_llm import FakeLLMServer
from duragent.testing.fake_telegram import FakeTelegramBotAPI
from tests.e2e.served_bot import ServedBot, init_chat_workspace, served_env

OWNER_ID = 1001
OWNER = {"id": OWNER_ID, "first_name": "Ada", "last_name": "Lovelace", "username": "ada"}
#: Group chats the owner added to the agent's allowlist, in the `telegram:<chat id>` form the
#: comment written by `init --telegram` suggests.
ALLOWED_GROUPS = (-100777, -100778, -100779, -100780)


def create_workspace(root: Path, telegram: FakeTelegramBotAPI, llm: FakeLLMServer) -> Path:
    """`duragent init --telegram` as a user runs it, then pointed at the fakes; returns duragent.yaml.

    The fake Bot API stands in for api.telegram.org (as a self-hosted Bot API server would);
    short long-polls keep shutdowns quick.
    """
    groups = [str(chat) for chat in ALLOWED_GROUPS]
    return init_chat_workspace(
        root, "telegram", str(OWNER_ID), telegram.api_base, llm, groups, poll_timeout=1
    )


@dataclass(kw_only=True)
class TelegramBot(ServedBot):
    """The Telegram bot's server and the fake Bot API its plugin polls."""

    telegram: FakeTelegramBotAPI

    @classmethod
    def for_workspace(
        cls, config: Path, root: Path, telegram: FakeTelegramBotAPI, llm: FakeLLMServer
    ) -> TelegramBot:
        """The bot of the workspace at `config` (not started), its server's logs in `root/logs`."""
        logs = root / "logs"
        logs.mkdir()
        return cls(config=config, llm=llm, logs=logs, env=server_env(telegram), telegram=telegram)


def server_env(telegram: FakeTelegramBotAPI) -> dict[str, str]:
    """What the server's environment holds on a home server: the API key and the bot token."""
    return served_env(TELEGRAM_BOT_TOKEN=telegram.token)
