"""A page built to trip the HTML parser (`<a<a<a…`, which made CPython's parser rescan the rest
of the page at every `<`: seconds per hundred kilobytes, minutes per megabyte) neither stalls the
server nor the turn: the page is converted off the event loop, in parts, and the part that is not
HTML is left out with a note. A real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from duragent.tools.base import ToolContext
from duragent.tools.html_text import html_to_text
from duragent.tools.web import WebFetchArgs, WebFetchTool

HOSTILE = "<html><body><h1>Prices</h1><p>Before the trap.</p>" + "<a" * 64 * 1024

#: The test server is on this machine, which web_fetch refuses unless its network is allowed.
fetcher = WebFetchTool(allowed_networks=["127.0.0.1"])


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async def hostile(request: web.Request) -> web.Response:
        return web.Response(text=HOSTILE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", hostile)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_a_page_that_trips_the_parser_does_not_stall_the_event_loop(
    server: TestServer, tmp_path: Path
) -> None:
    ctx = ToolContext(agent="helper", session_id="s_test", workdir=tmp_path)
    longest_pause = 0.0

    async def every_other_session() -> None:
        nonlocal longest_pause
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            longest_pause = max(longest_pause, now - last)
            last = now

    others = asyncio.create_task(every_other_session())
    try:
        result = await fetcher.run(WebFetchArgs(url=str(server.make_url("/"))), ctx)
    finally:
        others.cancel()

    assert longest_pause < 1.0
    assert result.ok
    assert "# Prices\n\nBefore the trap." in result.content
    assert "characters are not well-formed HTML and were left out]" in result.content


def test_a_document_is_converted_whole_across_the_parts_it_is_fed_in() -> None:
    # 100,000 paragraphs: tags and entities fall on every boundary of the parts
    html = "<ul>" + "<li>caf&eacute; &amp; <b>bar</b></li>" * 100_000 + "</ul><p>The end.</p>"

    text = html_to_text(html)

    assert text.count("- café & bar") == 100_000
    assert text.endswith("The end.")
