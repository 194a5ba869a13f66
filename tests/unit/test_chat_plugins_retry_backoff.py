"""The Slack and Telegram plugins' `retry_backoff`: how long a call that failed on the way waits
before it is tried again (doubling for each retry), and a value that is no such wait refused
naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from duragent.errors import ConfigError
from duragent.plugins.slack.plugin import SlackSettings, _transient_backoff
from duragent.plugins.telegram.plugin import TelegramSettings

SLACK = {"bot_token": "xoxb-1", "app_token": "xapp-1"}
TELEGRAM = {"bot_token": "123456789:AAsecret"}


def read(settings: type[SlackSettings | TelegramSettings], config: dict[str, Any]) -> float:
    return settings.from_config(config, {}).retry_backoff


@pytest.mark.parametrize(("settings", "tokens"), [(SlackSettings, SLACK), (TelegramSettings, TELEGRAM)])
def test_a_failed_call_first_waits_one_second_unless_configured(
    settings: type[SlackSettings | TelegramSettings], tokens: dict[str, str]
) -> None:
    assert read(settings, tokens) == 1.0
    assert read(settings, {**tokens, "retry_backoff": "200ms"}) == 0.2
    assert read(settings, {**tokens, "retry_backoff": 2}) == 2.0


def test_a_failed_slack_call_waits_one_then_two_then_four_times_the_first_wait() -> None:
    for first in (1.0, 0.2):
        waits = [_transient_backoff(first).calculate_sleep_duration(attempt) for attempt in range(3)]
        for wait, base in zip(waits, (first, 2 * first, 4 * first), strict=True):
            assert base <= wait <= base + first  # plus up to `first` of jitter


@pytest.mark.parametrize("value", ["soon", "0s", "-1", "1m", True])
@pytest.mark.parametrize(("settings", "tokens"), [(SlackSettings, SLACK), (TelegramSettings, TELEGRAM)])
def test_a_retry_backoff_that_is_no_short_wait_stops_startup_naming_the_key(
    settings: type[SlackSettings | TelegramSettings], tokens: dict[str, str], value: object
) -> None:
    with pytest.raises(ConfigError, match="`retry_backoff` must be a duration above 0 and at most 10s "):
        read(settings, {**tokens, "retry_backoff": value})
