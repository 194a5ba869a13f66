"""A Telegram bot as a user runs it: `duragent init --telegram`, then `duragent serve` as a real
process, with its plugin talking to the fake Bot API and its agent to the fake LLM.

`TelegramBot` owns the workspace and the server process; tests talk to the bot through the
fake Bot API (`inject_message`, `wait_for_message`) and read the server's state through its admin
API. Starting a server costs seconds (the plugin imports aiogram), so a test module shares one.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from duragent.testing.fake_llm import FakeLLMServer
from duragent.testing.fake_telegram import FakeTelegramBotAPI
from tests.e2e.served_bot import ServedBot, edit_file, prepare_agent

OWNER_ID = 1001
OWNER = {"id": OWNER_ID, "first_name": "Ada", "last_name": "Lovelace", "username": "ada"}
#: Group chats the owner added to the agent's allowlist, in the `telegram:<chat id>` form the
#: comment written by `init --telegram` suggests.
ALLOWED_GROUPS = (-100777, -100778, -100779, -100780)


def create_workspace(root: Path, telegram: FakeTelegramBotAPI, llm: FakeLLMServer) -> Path:
    """`duragent init --telegram` as a user runs it, then pointed at the fakes; returns duragent.yaml."""
    import subprocess

    result = subprocess.run(
        [
            *(sys.executable, "-m", "duragent", "init", str(root), "--yes"),
            *("--provider", "openai", "--model", "gpt-test", "--telegram-owner", str(OWNER_ID)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = root / "duragent.yaml"
    # The fake Bot API stands in for api.telegram.org (as a self-hosted Bot API server would);
    # short long-polls keep shutdowns quick.
    edit_file(
        config,
        "      restart: always\n      config:\n",
        "      restart: always\n      config:\n"
        f"        api_base: {telegram.api_base}\n"
        "        poll_timeout: 1\n",
    )
    prepare_agent(root, llm, [f"telegram:{chat}" for chat in ALLOWED_GROUPS])
    return config


@dataclass(kw_only=True)
class TelegramBot(ServedBot):
    """The Telegram bot's server and the fake Bot API its plugin polls."""

    telegram: FakeTelegramBotAPI


def server_env(telegram: FakeTelegramBotAPI) -> dict[str, str]:
    """What the server's environment holds on a home server: the API key and the bot token."""
    venv_bin = str(Path(sys.executable).parent)  # where `duragent-gateway-telegram` is installed
    return {
        "OPENAI_API_KEY": "sk-test",
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
    }
