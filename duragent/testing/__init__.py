"""Fakes of Duragent's peers (LLM servers, chat platforms) for tests, ours and plugin authors'."""

from typing import Any


def __getattr__(name: str) -> Any:
    """`duragent.testing.FakeTelegramBotAPI` / `FakeDiscord`, imported on first use (they pull in aiohttp)."""
    if name == "FakeTelegramBotAPI":
        from duragent.testing.fake_telegram import FakeTelegramBotAPI

        return FakeTelegramBotAPI
    if name == "FakeDiscord":
        from duragent.testing.fake_discord import FakeDiscord

        return FakeDiscord
    raise AttributeError(name)
