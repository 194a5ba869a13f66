"""Pytest fixtures that start Duragent's fake peers; registered as a pytest plugin.

Use them in any test suite where duragent is installed (needs pytest-asyncio):

    async def test_reply_is_streamed(fake_llm):
        fake_llm.enqueue(text("Hello", chunks=2))
        provider = OpenAICompatProvider(fake_llm.url, "test-key")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest_asyncio

if TYPE_CHECKING:
    from duragent.testing.fake_discord import FakeDiscord
    from duragent.testing.fake_llm import FakeLLMServer
    from duragent.testing.fake_search import FakeSearchServer
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
async def fake_search() -> AsyncIterator[FakeSearchServer]:
    """A fake SearXNG + Brave + Tavily search service on 127.0.0.1 (free port), for `web_search`."""
    from duragent.testing.fake_search import FakeSearchServer

    async with FakeSearchServer() as server:
        yield server


@pytest_asyncio.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A fake Slack (Web API + Socket Mode) on 127.0.0.1 (free port); point an app at its `api_base`."""
    from duragent.testing.fake_slack import FakeSlack

    async with FakeSlack() as server:
        yield server


@pytest_asyncio.fixture
async def duragent_client(aiohttp_client: Any) -> Callable[..., Awaitable[Any]]:
    """Like pytest-aiohttp's `aiohttp_client`, for an app of `create_app`: sends the tokens it requires.

    `await duragent_client(app)` gives a TestClient whose requests carry the server's API token
    (as bearer) and admin token (`X-Duragent-Admin-Token`), from duragent.yaml or the workspace's
    `run/tokens.json`.
    """
    from duragent.access_tokens import AccessTokens, headers_for
    from duragent.server.auth import REQUIRED_TOKENS

    async def make(app: Any, **options: Any) -> Any:
        required = app[REQUIRED_TOKENS]
        headers = headers_for(AccessTokens(api=required.api or "", admin=required.admin or ""))
        return await aiohttp_client(app, headers={**headers, **options.pop("headers", {})}, **options)

    return make
