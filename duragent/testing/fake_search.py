"""A fake web search service on 127.0.0.1 speaking SearXNG's, Brave's and Tavily's JSON APIs.

For tests of the `web_search` tool (ours or a plugin's): one aiohttp server answers

- `GET /search?q=…&format=json` as a SearXNG instance (403 unless `format=json`, as an instance
  without the JSON format enabled answers);
- `GET /res/v1/web/search?q=…&count=N` as the Brave Search API (401 without the right
  `X-Subscription-Token`);
- `POST /search` `{"query", "max_results"}` as the Tavily API (401 without the right
  `Authorization: Bearer` key).

Results come from `server.results` (title, URL, snippet), or from `server.responder(query)`;
`server.fail_with(status)` makes the next request fail. Every request is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from duragent.testing.fake_server import Failure, FakeServer

API_KEY = "search-test-key"


@dataclass(frozen=True)
class FakeResult:
    """One search result as the fake returns it."""

    title: str
    url: str
    snippet: str


@dataclass(frozen=True)
class SearchRequest:
    """A request the fake received: which API, the query, and the rest of what was sent."""

    api: str
    query: str
    count: int | None
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)


class FakeSearchServer(FakeServer):
    """SearXNG, Brave and Tavily search APIs in one aiohttp server on a free port."""

    def __init__(self, *, host: str = "127.0.0.1", api_key: str = API_KEY):
        super().__init__(host=host)
        self.api_key = api_key
        self.results: list[FakeResult] = [
            FakeResult("Example Domain", "https://example.com/", "This domain is for use in examples."),
        ]
        #: Answers by query when set (None: `results`).
        self.responder: Callable[[str], Sequence[FakeResult]] | None = None
        self.requests: list[SearchRequest] = []

    @property
    def url(self) -> str:
        """The base URL: a SearXNG instance's URL, and the `url` override for Brave and Tavily."""
        return self.root_url

    @property
    def brave_url(self) -> str:
        """The Brave web search endpoint of this server."""
        return f"{self.url}/res/v1/web/search"

    @property
    def tavily_url(self) -> str:
        """The Tavily search endpoint of this server."""
        return f"{self.url}/search"

    def fail_with(self, status: int) -> None:
        """Answer the next request with this HTTP status."""
        self._queue_failure("any", Failure(status))

    def add_routes(self, app: web.Application) -> None:
        """SearXNG's, Brave's and Tavily's search endpoints."""
        app.router.add_get("/search", self._searxng)
        app.router.add_post("/search", self._tavily)
        app.router.add_get("/res/v1/web/search", self._brave)

    def _record(self, request: SearchRequest) -> None:
        self.requests.append(request)
        self.notify()

    def _answer(self, query: str, count: int | None) -> list[FakeResult]:
        found = list(self.responder(query) if self.responder else self.results)
        return found[:count] if count else found

    def _failure(self) -> web.Response | None:
        if (failure := self._next_failure("any")) is None:
            return None
        return web.json_response({"error": f"failing with {failure.status} as asked"}, status=failure.status)

    async def _searxng(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        self._record(SearchRequest("searxng", query, None, dict(request.headers), dict(request.query)))
        if (failure := self._failure()) is not None:
            return failure
        if request.query.get("format") != "json":
            return web.Response(status=403, text="403 Forbidden")
        results = [
            {"title": r.title, "url": r.url, "content": r.snippet, "engine": "fake"}
            for r in self._answer(query, None)
        ]
        return web.json_response({"query": query, "number_of_results": len(results), "results": results})

    async def _brave(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        count = int(request.query.get("count", "20"))
        self._record(SearchRequest("brave", query, count, dict(request.headers), dict(request.query)))
        if request.headers.get("X-Subscription-Token") != self.api_key:
            return web.json_response(
                {"type": "ErrorResponse", "error": {"code": "SUBSCRIPTION_TOKEN_INVALID", "status": 401}},
                status=401,
            )
        if (failure := self._failure()) is not None:
            return failure
        results = [
            {"title": r.title, "url": r.url, "description": r.snippet, "type": "search_result"}
            for r in self._answer(query, count)
        ]
        return web.json_response(
            {"type": "search", "query": {"original": query}, "web": {"results": results}}
        )

    async def _tavily(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        query = str(body.get("query", ""))
        count = int(body.get("max_results", 5))
        self._record(SearchRequest("tavily", query, count, dict(request.headers)))
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response(
                {"detail": {"error": "Unauthorized: missing or invalid API key."}}, status=401
            )
        if (failure := self._failure()) is not None:
            return failure
        results = [
            {"title": r.title, "url": r.url, "content": r.snippet, "score": 0.9}
            for r in self._answer(query, count)
        ]
        return web.json_response({"query": query, "results": results, "response_time": 0.01})
