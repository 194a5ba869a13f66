"""Fakes of Duragent's peers (LLM servers, chat platforms) for tests, ours and plugin authors'."""

from typing import Any


def __getattr__(name: str) -> Any:
    """`duragent.testing.FakeTelegramBotAPI`, `FakeDiscord`, `FakeSlack`: imported on first use (aiohttp)."""
    if name == "FakeTelegramBotAPI":
        from duragent.testing.fake_telegram import FakeTelegramBotAPI

        return FakeTelegramBotAPI
    if name == "FakeSlack":
        from duragent.testing.fake_slack import FakeSlack

        return FakeSlack
    if name == "FakeDiscord":
        from duragent.testing.fake_discord import FakeDiscord

        return FakeDiscord
    raise AttributeError(name)
