"""`web_search`: search the web through a SearXNG instance or the Brave or Tavily API.

The agent's `spec.tools.web_search` says which service (`provider`), where (`url`) and which
environment variable holds the API key (`api_key_env`). The key is read by the server when a
search runs and is never shown to the model or passed to other tools. Results come back as
title, URL and snippet.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import Field

from duragent import __version__
from duragent.agents.spec import WebSearchSpec
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from duragent.tools.output import cap_text

BRAVE_URL = "https://api.search.brave.com/res/v1/web/search"
TAVILY_URL = "https://api.tavily.com/search"
#: Where each provider's API key is read from unless `api_key_env` says otherwise.
DEFAULT_KEY_ENV = {"brave": "BRAVE_API_KEY", "tavily": "TAVILY_API_KEY"}
_TAG = re.compile(r"<[^>]+>")
_SNIPPET_CHARS = 500
#: Most of a search service's answer that is read: 20 results fit many times over, and a service
#: that sends more (a misconfigured URL serving a disk image, say) must not fill the server's memory.
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class SearchFailed(Exception):
    """The search service could not answer; the message says why, for the model to read."""


@dataclass(frozen=True)
class SearchResult:
    """One result: title, URL and snippet."""

    title: str
    url: str
    snippet: str


class WebSearchArgs(ToolArgs):
    """Arguments of `web_search`."""

    query: str = Field(min_length=1, description="What to search for.")
    count: int | None = Field(None, ge=1, le=20, description="How many results at most (default 5).")


class WebSearchTool(Tool[WebSearchArgs]):
    """Search the web and return titles, URLs and snippets."""

    name = "web_search"
    description = (
        "Search the web. Returns a numbered list of results, each with its title, URL and a "
        "snippet; fetch a page with web_fetch to read it."
    )
    Args = WebSearchArgs

    def __init__(self, settings: WebSearchSpec | None = None):
        self.settings = settings

    async def run(self, args: WebSearchArgs, ctx: ToolContext) -> ToolResult:
        """Ask the configured service; a failure (refused key, timeout, bad answer) is a failed result."""
        import aiohttp

        settings = self.settings
        if settings is None:
            return ToolResult(
                False, "web_search is not configured: neither tools.web_search nor duragent.yaml's web_search"
            )
        count = min(args.count or settings.max_results, settings.max_results)
        timeout = aiohttp.ClientTimeout(total=settings.timeout.total_seconds())
        headers = {"User-Agent": f"Duragent/{__version__} (web_search tool)", "Accept": "application/json"}
        try:
            search = _BACKENDS[settings.provider]
            async with aiohttp.ClientSession(timeout=timeout, headers=headers) as client:
                results = await search(client, settings, args.query, count)
        except SearchFailed as exc:
            return ToolResult(False, str(exc))
        except TimeoutError:
            return ToolResult(
                False, f"{settings.provider} did not answer within {settings.timeout.total_seconds():g} s"
            )
        except aiohttp.ClientError as exc:
            return ToolResult(False, f"could not reach {settings.provider}: {exc}")
        results = results[:count]
        data = {"provider": settings.provider, "results": [asdict(r) for r in results]}
        return ToolResult(True, cap_text(render(args.query, results), ctx.limits.output_cap_bytes), data)

    def invocation(self, args: WebSearchArgs, ctx: ToolContext) -> str:
        """The query."""
        return args.query


def render(query: str, results: list[SearchResult]) -> str:
    """What the model reads: a numbered list of title, URL and snippet."""
    if not results:
        return f"no results for {query!r}"
    blocks = []
    for number, result in enumerate(results, 1):
        lines = [f"{number}. {result.title or '(no title)'}", f"   {result.url}"]
        if result.snippet:
            lines.append(f"   {result.snippet}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _api_key(settings: WebSearchSpec) -> str:
    variable = settings.api_key_env or DEFAULT_KEY_ENV[settings.provider]
    key = os.environ.get(variable, "")
    if not key:
        raise SearchFailed(f"{settings.provider} needs an API key: {variable} is not set for the server")
    return key


async def _json(response: Any, provider: str) -> Any:
    """The response's JSON body, or SearchFailed saying what the service answered instead."""
    if response.status in (401, 403):
        raise SearchFailed(
            f"{provider} refused the request (HTTP {response.status}): check the API key or access"
        )
    if response.status == 429:
        raise SearchFailed(f"{provider} is rate limiting (HTTP 429): try again later")
    # (here: the registry imports this module at start, and web_fetch's HTML parser need not load)
    from duragent.tools.web import read_limited

    body, more = await read_limited(response.content, MAX_ANSWER_BYTES)
    if response.status >= 400:
        shown = body[:200].decode("utf-8", errors="replace")
        raise SearchFailed(f"{provider} answered HTTP {response.status}: {shown}")
    if more:
        raise SearchFailed(f"{provider} answered more than {MAX_ANSWER_BYTES} bytes; check its url")
    try:
        return json.loads(body)
    except ValueError:
        raise SearchFailed(f"{provider} answered something that is not JSON") from None


def _result(title: Any, url: Any, snippet: Any) -> SearchResult:
    text = html.unescape(_TAG.sub("", str(snippet or ""))).strip()
    if len(text) > _SNIPPET_CHARS:
        text = text[: _SNIPPET_CHARS - 1] + "…"
    return SearchResult(html.unescape(_TAG.sub("", str(title or ""))).strip(), str(url or ""), text)


def _items(body: Any, *path: str) -> list[dict[str, Any]]:
    node = body
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, list):
        raise SearchFailed(f"unexpected answer from the search service: no {'.'.join(path)} list")
    return [item for item in node if isinstance(item, dict)]


async def _searxng(client: Any, settings: WebSearchSpec, query: str, count: int) -> list[SearchResult]:
    url = f"{(settings.url or '').rstrip('/')}/search"
    async with client.get(url, params={"q": query, "format": "json"}) as response:
        if response.status == 403:
            raise SearchFailed(
                "searxng refused the JSON format (HTTP 403): enable `json` under search.formats "
                "in the instance's settings.yml"
            )
        body = await _json(response, "searxng")
    return [_result(i.get("title"), i.get("url"), i.get("content")) for i in _items(body, "results")]


async def _brave(client: Any, settings: WebSearchSpec, query: str, count: int) -> list[SearchResult]:
    headers = {"X-Subscription-Token": _api_key(settings)}
    params = {"q": query, "count": str(count)}
    async with client.get(settings.url or BRAVE_URL, params=params, headers=headers) as response:
        body = await _json(response, "brave")
    if isinstance(body, dict) and "web" not in body:
        return []  # Brave leaves `web` out when nothing matched
    return [
        _result(i.get("title"), i.get("url"), i.get("description")) for i in _items(body, "web", "results")
    ]


async def _tavily(client: Any, settings: WebSearchSpec, query: str, count: int) -> list[SearchResult]:
    headers = {"Authorization": f"Bearer {_api_key(settings)}"}
    payload = {"query": query, "max_results": count}
    async with client.post(settings.url or TAVILY_URL, json=payload, headers=headers) as response:
        body = await _json(response, "tavily")
    return [_result(i.get("title"), i.get("url"), i.get("content")) for i in _items(body, "results")]


_Backend = Callable[[Any, WebSearchSpec, str, int], Awaitable[list[SearchResult]]]
_BACKENDS: dict[str, _Backend] = {"searxng": _searxng, "brave": _brave, "tavily": _tavily}
