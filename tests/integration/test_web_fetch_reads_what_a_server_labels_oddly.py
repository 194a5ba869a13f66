"""web_fetch reads what a server sends however it is labelled: a charset that names a codec that
is no text encoding (`base64`, `zlib`) falls back to UTF-8 instead of failing the tool, and a
script or YAML file is text, not "binary content". A real aiohttp server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from duragent.tools.base import ToolContext
from duragent.tools.registry import call_tool
from duragent.tools.web import WebFetchTool

#: The test server is on this machine, which web_fetch refuses unless its network is allowed.
fetcher = WebFetchTool(allowed_networks=["127.0.0.1"])


async def labelled(request: web.Request) -> web.Response:
    response = web.Response(body="const greeting = 'héllo';".encode())
    response.headers["Content-Type"] = request.query["type"]
    return response


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_get("/", labelled)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def context(tmp_path: Path) -> ToolContext:
    return ToolContext(agent="helper", session_id="s_test", workdir=tmp_path)


@pytest.mark.parametrize("charset", ["base64", "zlib", "rot13", "no-such-charset", "utf-8"])
async def test_a_charset_that_is_no_text_encoding_reads_as_utf8(
    server: TestServer, tmp_path: Path, charset: str
) -> None:
    url = str(server.make_url("/").with_query(type=f"text/plain; charset={charset}"))

    result = await call_tool(fetcher, {"url": url}, context(tmp_path))

    assert result.ok, result.content
    assert result.content == f"Source: {url}\n\nconst greeting = 'héllo';"


@pytest.mark.parametrize("content_type", ["application/javascript", "text/javascript", "application/yaml"])
async def test_scripts_and_yaml_are_text(server: TestServer, tmp_path: Path, content_type: str) -> None:
    url = str(server.make_url("/").with_query(type=content_type))

    result = await call_tool(fetcher, {"url": url}, context(tmp_path))

    assert result.ok
    assert result.content.endswith("const greeting = 'héllo';")


async def test_a_url_without_a_host_says_so(tmp_path: Path) -> None:
    result = await call_tool(fetcher, {"url": "http:///index.html"}, context(tmp_path))

    assert not result.ok
    assert result.content == "invalid URL 'http:///index.html': it names no host"
