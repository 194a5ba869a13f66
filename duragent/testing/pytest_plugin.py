"""Pytest fixtures that start Duragent's fake peers; registered as a pytest plugin.

Use them in any test suite where duragent is installed (needs pytest-asyncio):

    async def test_reply_is_streamed(fake_llm):
        fake_llm.enqueue(text("Hello", chunks=2))
        provider = OpenAICompatProvider(fake_llm.url, "test-key")
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest_asyncio

if TYPE_CHECKING:
    from duragent.testing.fake_discord import FakeDiscord
    from duragent.testing.fake_llm import FakeLLMServer
    from duragent.testing.fake_slack import FakeSlack
    from duragent.testing.fake_telegram import FakeTelegramBotAPI


@pytest_asyncio.fixture
async def fake_llm() -> AsyncIterator[FakeLLMServer]:
    """A fake OpenAI + Anthropic server on 127.0.0.1 (free port), started and stopped per test."""
    from duragent.testing.fake_llm import FakeLLMServer

    async with FakeLLMServer() as server:
        yield server


@pytest_asyncio.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegramBotAPI]:
    """A fake Telegram Bot API on 127.0.0.1 (free port); point a bot at `fake_telegram.api_base`."""
    from duragent.testing.fake_telegram import FakeTelegramBotAPI

    async with FakeTelegramBotAPI() as server:
        yield server


@pytest_asyncio.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A fake Discord (REST + Gateway) on 127.0.0.1 (free port); point a bot at `fake_discord.api_base`."""
    from duragent.testing.fake_discord import FakeDiscord

    async with FakeDiscord() as server:
        yield server


@pytest_asyncio.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A fake Slack (Web API + Socket Mode) on 127.0.0.1 (free port); point an app at its `api_base`."""
    from duragent.testing.fake_slack import FakeSlack

    async with FakeSlack() as server:
        yield server
