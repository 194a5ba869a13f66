"""Fakes of Duragent's peers (LLM servers, chat platforms) for tests, ours and plugin authors'."""

from typing import Any


def __getattr__(name: str) -> Any:
    """`duragent.testing.FakeTelegramBotAPI`, imported on first use (it pulls in aiohttp)."""
    if name == "FakeTelegramBotAPI":
        from duragent.testing.fake_telegram import FakeTelegramBotAPI

        return FakeTelegramBotAPI
    raise AttributeError(name)
