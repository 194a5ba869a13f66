"""The Telegram plugin's `config:` map: a token that cannot be one fails startup naming its key."""

from __future__ import annotations

import pytest

from duragent.errors import ConfigError
from duragent.plugins.telegram.plugin import TelegramSettings


@pytest.mark.parametrize(
    "token", ["AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "123456789 AAH:dq", "bot123456789:AAH"]
)
def test_a_token_of_the_wrong_shape_names_the_config_key_without_quoting_it(token: str) -> None:
    with pytest.raises(ConfigError) as refused:
        TelegramSettings.from_config({"bot_token": token}, {})

    assert "`bot_token`" in str(refused.value)
    assert "123456789:AA" in str(refused.value)  # what a token looks like
    assert token not in str(refused.value)


def test_a_token_of_the_wrong_shape_from_the_environment_names_the_variable() -> None:
    # (in backticks: the server adds which line of duragent.yaml set the variable, if one did)
    with pytest.raises(ConfigError, match="`TELEGRAM_BOT_TOKEN` is not a bot token"):
        TelegramSettings.from_config({}, {"TELEGRAM_BOT_TOKEN": "paste-here"})


def test_a_token_as_botfather_gives_it_is_accepted() -> None:
    settings = TelegramSettings.from_config(
        {"bot_token": " 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw\n"}, {}
    )

    assert settings.bot_token == "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def test_a_poll_timeout_of_zero_is_refused_rather_than_polling_in_a_tight_loop() -> None:
    with pytest.raises(ConfigError, match="`poll_timeout` must be a whole number from 1 to 3600"):
        TelegramSettings.from_config({"bot_token": "1:x", "poll_timeout": 0}, {})
