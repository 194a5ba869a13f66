"""web_fetch against a real aiohttp server on 127.0.0.1, and the HTML-to-text conversion."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from duragent.tools.base import ToolContext, ToolLimits
from duragent.tools.html_text import html_to_text
from duragent.tools.web import WebFetchArgs, WebFetchTool

PAGE = """<!doctype html>
<html><head><title>Release notes</title><style>body { color: red }</style>
<script>trackVisitor()</script></head>
<body><nav><a href="/">Home</a></nav>
<h1>Version 2.0</h1>
<p>Faster <b>startup</b> and <a href="https://example.test/changes">full changes</a>.</p>
<ul><li>one</li><li>two &amp; three</li></ul>
<pre>def main():
    return 0</pre>
</body></html>"""


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def big(request: web.Request) -> web.Response:
    return web.Response(text="z" * 50_000, content_type="text/plain")


async def missing(request: web.Request) -> web.Response:
    return web.Response(status=404, text="no such page", content_type="text/plain")


async def image(request: web.Request) -> web.Response:
    return web.Response(body=b"\x89PNG\r\n\x1a\n" + bytes(100), content_type="image/png")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(text="late")


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.add_routes(
        [
            web.get("/page", page),
            web.get("/big", big),
            web.get("/missing", missing),
            web.get("/image", image),
            web.get("/slow", slow),
        ]
    )
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


#: The test server is on this machine, which web_fetch refuses unless its network is allowed.
local_fetcher = WebFetchTool(allowed_networks=["127.0.0.1"])


def context(tmp_path: Path, **limits: float) -> ToolContext:
    return ToolContext(agent="helper", session_id="s_test", workdir=tmp_path, limits=ToolLimits(**limits))  # type: ignore[arg-type]


async def test_html_page_is_returned_as_readable_text(server: TestServer, tmp_path: Path) -> None:
    url = str(server.make_url("/page"))

    result = await local_fetcher.run(WebFetchArgs(url=url), context(tmp_path))

    assert result.ok
    assert result.content.startswith(f"Source: {url}")
    assert "# Version 2.0" in result.content
    assert "Faster startup and full changes (https://example.test/changes)." in result.content
    assert "- two & three" in result.content
    assert "def main():\n    return 0" in result.content
    assert "trackVisitor" not in result.content
    assert "color: red" not in result.content


async def test_body_is_cut_at_max_bytes(server: TestServer, tmp_path: Path) -> None:
    result = await local_fetcher.run(
        WebFetchArgs(url=str(server.make_url("/big")), max_bytes=1000), context(tmp_path)
    )

    assert result.ok
    assert result.content.count("z") == 1000
    assert "[body cut at 1000 bytes]" in result.content
    assert result.data is not None
    assert result.data["truncated"] is True


async def test_http_error_status_is_a_failed_result(server: TestServer, tmp_path: Path) -> None:
    result = await local_fetcher.run(WebFetchArgs(url=str(server.make_url("/missing"))), context(tmp_path))

    assert not result.ok
    assert result.content.startswith("HTTP 404")
    assert "no such page" in result.content


async def test_binary_content_is_described_not_returned(server: TestServer, tmp_path: Path) -> None:
    result = await local_fetcher.run(WebFetchArgs(url=str(server.make_url("/image"))), context(tmp_path))

    assert "binary content (image/png, 108 bytes) not shown" in result.content
    assert "PNG" not in result.content


async def test_slow_server_times_out(server: TestServer, tmp_path: Path) -> None:
    ctx = context(tmp_path, fetch_timeout_seconds=0.3)

    result = await local_fetcher.run(WebFetchArgs(url=str(server.make_url("/slow"))), ctx)

    assert not result.ok
    assert "timed out after 0.3 s" in result.content


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.test/x", "javascript:alert(1)", "not a url"]
)
async def test_non_http_urls_are_refused(tmp_path: Path, url: str) -> None:
    result = await WebFetchTool().run(WebFetchArgs(url=url), context(tmp_path))

    assert not result.ok
    assert "only http:// and https:// URLs" in result.content or "invalid URL" in result.content


def test_html_to_text_puts_the_title_first_and_drops_invisible_parts() -> None:
    text = html_to_text("<html><head><title>T</title></head><body><noscript>x</noscript><p>Body</p></body>")

    assert text == "Title: T\n\nBody"
