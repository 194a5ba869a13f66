"""`web_fetch`: GET an http(s) URL within time and size limits, HTML turned into readable text.

Only public addresses are fetched: a URL (or a redirect) leading to loopback, a private
network, link-local (the cloud metadata service at 169.254.169.254) or another address that is
not on the internet is refused before a connection is made, checked on the address the name
resolves to, so neither a name pointing at 127.0.0.1 nor a redirect gets around it. The networks
an agent may reach besides (a LAN service, a test server) are given to the tool:
`WebFetchTool(allowed_networks=["192.168.1.0/24"])`.
"""

from __future__ import annotations

import asyncio
import codecs
import ipaddress
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from pydantic import Field

from duragent import __version__
from duragent.errors import DuragentError
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from duragent.tools.html_text import html_to_text
from duragent.tools.output import cap_text

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver

_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/xhtml+xml",
    "+json",
    "+xml",
    "javascript",
    "yaml",
)
_READ_CHUNK = 64 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Redirects followed before giving up (browsers stop at about 20; a page needs a few at most).
MAX_REDIRECTS = 10

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: NAT64's well-known prefix: its last 32 bits are the IPv4 address a NAT64 gateway connects to.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: NAT64 prefixes for a site's own use (RFC 8215): they lead into that site's networks.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


class AddressRefused(DuragentError):
    """A URL leads to an address web_fetch does not reach (loopback, private, link-local...)."""


class WebFetchArgs(ToolArgs):
    """Arguments of `web_fetch`."""

    url: str = Field(min_length=1, description="An http:// or https:// URL.")
    max_bytes: int | None = Field(None, ge=1, description="Read at most this many bytes of the body.")


class WebFetchTool(Tool[WebFetchArgs]):
    """Fetch a web page or text document."""

    name = "web_fetch"
    description = (
        "Fetch an http(s) URL with GET and return its text (HTML is turned into readable text, "
        "links shown as `text (url)`). Large bodies are cut; binary content is not returned. "
        "Only public internet addresses can be fetched."
    )
    Args = WebFetchArgs

    def __init__(self, allowed_networks: Iterable[str] = ()):
        """`allowed_networks` (CIDR or single addresses) may be fetched although not public."""
        self.allowed_networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in allowed_networks
        )

    async def run(self, args: WebFetchArgs, ctx: ToolContext) -> ToolResult:
        """Fetch the URL; failures (refused scheme or address, HTTP errors, timeouts) are failed results."""
        import aiohttp
        from yarl import URL

        try:
            url = URL(args.url)
        except ValueError as exc:
            return ToolResult(False, f"invalid URL {args.url!r}: {exc}")
        if url.scheme not in ("http", "https"):
            return ToolResult(False, f"refused {args.url!r}: only http:// and https:// URLs can be fetched")
        if not url.host:
            return ToolResult(False, f"invalid URL {args.url!r}: it names no host")
        limit = min(args.max_bytes or ctx.limits.fetch_max_bytes, ctx.limits.fetch_max_bytes)
        timeout = aiohttp.ClientTimeout(total=ctx.limits.fetch_timeout_seconds)
        headers = {"User-Agent": f"Duragent/{__version__} (web_fetch tool)"}
        # (duck-typed, so that importing this module does not import aiohttp)
        resolver = cast("AbstractResolver", _CheckedResolver(self.allowed_networks))
        connector = aiohttp.TCPConnector(resolver=resolver)
        try:
            async with aiohttp.ClientSession(timeout=timeout, headers=headers, connector=connector) as client:
                return await self._fetch(client, url, limit, ctx)
        except AddressRefused as exc:
            return ToolResult(False, f"refused {args.url!r}: {exc}")
        except TimeoutError:
            return ToolResult(False, f"timed out after {ctx.limits.fetch_timeout_seconds:g} s fetching {url}")
        except aiohttp.ClientError as exc:
            return ToolResult(False, f"could not fetch {url}: {exc}")

    async def _fetch(self, client: Any, url: Any, limit: int, ctx: ToolContext) -> ToolResult:
        """GET `url`, following redirects by hand so that each hop's address is checked."""
        for hop in range(MAX_REDIRECTS + 1):
            try:
                _check_literal_host(url.host, self.allowed_networks)
                async with client.get(url, allow_redirects=False) as response:
                    location = response.headers.get("Location")
                    if response.status not in _REDIRECT_STATUSES or not location:
                        body, truncated = await read_limited(response.content, limit)
                        return await _describe_response(response, body, truncated, limit, ctx)
            except AddressRefused as exc:
                raise AddressRefused(f"it redirects to {url}, and {exc}" if hop else str(exc)) from None
            url = _redirect_target(url, location)
        return ToolResult(False, f"gave up after {MAX_REDIRECTS} redirects, the last to {url}")

    def invocation(self, args: WebFetchArgs, ctx: ToolContext) -> str:
        """The URL."""
        return args.url


async def read_limited(stream: Any, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more."""
    chunks = bytearray()
    while len(chunks) <= limit:
        chunk = await stream.read(_READ_CHUNK)
        if not chunk:
            return bytes(chunks), False
        chunks += chunk
    return bytes(chunks[:limit]), True


async def _describe_response(
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
        # (seconds of CPU for a large page: off the event loop, where every session waits)
        text = await asyncio.to_thread(html_to_text, text)
    text = cap_text(text, ctx.limits.output_cap_bytes)
    if truncated:
        text += f"\n[body cut at {limit} bytes]"
    if status >= 400:
        return ToolResult(False, f"HTTP {status} {response.reason or ''} from {response.url}\n\n{text}", data)
    return ToolResult(True, f"Source: {response.url}\n\n{text}", data)


def _known_charset(charset: str | None) -> str:
    """The server's charset when Python knows it as a text encoding, else UTF-8."""
    if charset:
        try:
            name = codecs.lookup(charset).name
            b"a".decode(name, errors="replace")  # (LookupError for a codec that is no charset: base64, zlib)
            return name
        except LookupError:
            # An unknown label: UTF-8 with replacement characters is the best reading left.
            return "utf-8"
    return "utf-8"


def _redirect_target(current: Any, location: str) -> Any:
    """Where a redirect leads; AddressRefused for anything but http(s)."""
    from yarl import URL

    try:
        target = current.join(URL(location))
    except ValueError:
        raise AddressRefused(f"it redirects to an invalid URL, {location!r}") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise AddressRefused(f"it redirects to {location!r}, which is not an http(s) URL")
    return target


def refusal(address: str, allowed: tuple[IPNetwork, ...] = ()) -> str | None:
    """What the IP `address` is when web_fetch must not connect to it (`a loopback address`), or
    None when it may."""
    ip = ipaddress.ip_address(address.split("%")[0])  # (an IPv6 zone, `fe80::1%eth0`, is no part of it)
    if any(ip in network for network in allowed):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64 or ip.is_site_local:
            return "a private network address"
        # `::ffff:127.0.0.1`, 6to4's `2002:7f00:1::` and NAT64's `64:ff9b::7f00:1` lead to an IPv4
        # address: that one decides
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal(str(embedded), allowed)
    if ip.is_global and not ip.is_multicast:
        return None
    if ip.is_loopback or ip.is_unspecified:
        return "a loopback address (this machine)"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if ip.is_private:
        return "a private network address"
    return "not a public internet address"


def _check_literal_host(host: str, allowed: tuple[IPNetwork, ...]) -> None:
    """AddressRefused when `host` is an IP address web_fetch must not reach (names are checked
    by `_CheckedResolver`: aiohttp does not resolve an address)."""
    try:
        kind = refusal(host, allowed)
    except ValueError:
        return  # a name
    if kind is not None:
        raise AddressRefused(f"{host} is {kind}; web_fetch reaches public internet addresses only")


class _CheckedResolver:
    """The default DNS resolver, refusing a name that resolves to an address web_fetch must not
    reach: the check is on the address connected to, so a name pointing at 127.0.0.1 is refused."""

    def __init__(self, allowed: tuple[IPNetwork, ...]):
        from aiohttp import DefaultResolver

        self._resolver = DefaultResolver()
        self._allowed = allowed

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> Any:
        """The addresses of `host`; AddressRefused when any of them is refused."""
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            kind = refusal(result["host"], self._allowed)
            if kind is not None:
                raise AddressRefused(
                    f"{host} resolves to {result['host']}, {kind}; web_fetch reaches public internet "
                    "addresses only"
                )
        return results

    async def close(self) -> None:
        """Release the underlying resolver."""
        await self._resolver.close()
