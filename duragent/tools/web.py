"""`web_fetch`: GET an http(s) URL within time and size limits, HTML turned into readable text."""

from __future__ import annotations

import codecs
from typing import Any

from pydantic import Field

from duragent import __version__
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from duragent.tools.html_text import html_to_text
from duragent.tools.output import cap_text

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml", "+json", "+xml")
_READ_CHUNK = 64 * 1024


class WebFetchArgs(ToolArgs):
    """Arguments of `web_fetch`."""

    url: str = Field(min_length=1, description="An http:// or https:// URL.")
    max_bytes: int | None = Field(None, ge=1, description="Read at most this many bytes of the body.")


class WebFetchTool(Tool[WebFetchArgs]):
    """Fetch a web page or text document."""

    name = "web_fetch"
    description = (
        "Fetch an http(s) URL with GET and return its text (HTML is turned into readable text, "
        "links shown as `text (url)`). Large bodies are cut; binary content is not returned."
    )
    Args = WebFetchArgs

    async def run(self, args: WebFetchArgs, ctx: ToolContext) -> ToolResult:
        """Fetch the URL; failures (refused scheme, HTTP errors, timeouts) are failed results."""
        import aiohttp
        from yarl import URL

        try:
            url = URL(args.url)
        except ValueError as exc:
            return ToolResult(False, f"invalid URL {args.url!r}: {exc}")
        if url.scheme not in ("http", "https") or not url.host:
            return ToolResult(False, f"refused {args.url!r}: only http:// and https:// URLs can be fetched")
        limit = min(args.max_bytes or ctx.limits.fetch_max_bytes, ctx.limits.fetch_max_bytes)
        timeout = aiohttp.ClientTimeout(total=ctx.limits.fetch_timeout_seconds)
        headers = {"User-Agent": f"Duragent/{__version__} (web_fetch tool)"}
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, headers=headers) as client,
                client.get(url) as response,
            ):
                body, truncated = await _read_limited(response.content, limit)
                return _describe_response(response, body, truncated, limit, ctx)
        except TimeoutError:
            return ToolResult(False, f"timed out after {ctx.limits.fetch_timeout_seconds:g} s fetching {url}")
        except aiohttp.ClientError as exc:
            return ToolResult(False, f"could not fetch {url}: {exc}")

    def invocation(self, args: WebFetchArgs, ctx: ToolContext) -> str:
        """The URL."""
        return args.url


async def _read_limited(stream: Any, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more."""
    chunks = bytearray()
    while len(chunks) <= limit:
        chunk = await stream.read(_READ_CHUNK)
        if not chunk:
            return bytes(chunks), False
        chunks += chunk
    return bytes(chunks[:limit]), True


def _describe_response(
    response: Any, body: bytes, truncated: bool, limit: int, ctx: ToolContext
) -> ToolResult:
    status = int(response.status)
    content_type = str(response.content_type or "application/octet-stream")
    data: dict[str, Any] = {
        "url": str(response.url),
        "status": status,
        "content_type": content_type,
        "bytes": len(body),
        "truncated": truncated,
    }
    if not any(marker in content_type for marker in _TEXT_TYPES):
        note = f"{content_type}, {len(body)}{'+' if truncated else ''} bytes"
        return ToolResult(
            status < 400, f"HTTP {status} from {response.url}: binary content ({note}) not shown", data
        )
    text = body.decode(_known_charset(response.charset), errors="replace")
    if "html" in content_type:
        text = html_to_text(text)
    text = cap_text(text, ctx.limits.output_cap_bytes)
    if truncated:
        text += f"\n[body cut at {limit} bytes]"
    if status >= 400:
        return ToolResult(False, f"HTTP {status} {response.reason or ''} from {response.url}\n\n{text}", data)
    return ToolResult(True, f"Source: {response.url}\n\n{text}", data)


def _known_charset(charset: str | None) -> str:
    """The server's charset when Python knows it, else UTF-8."""
    if charset:
        try:
            return codecs.lookup(charset).name
        except LookupError:
            # An unknown label: UTF-8 with replacement characters is the best reading left.
            return "utf-8"
    return "utf-8"
