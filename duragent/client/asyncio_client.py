"""`ApiClient` over asyncio's own TCP streams: what the fast paths of `send`, `chat` and `attach`
talk through.

Importing aiohttp costs more (0.1-0.3 s) than a chat's whole first screen may take, and a
terminal needs no connection pool. It does need what a blocking client cannot give: an event
stream open for as long as it is attached, requests in flight beside it (a message waits for its
turn), and cancellation that closes the connection at once, since the server counts an open
stream as an attached client. Each request opens its own connection (`Connection: close`).
The routes and the errors a person sees are `ApiClient`'s own; only the transport differs.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from duragent.client.http import (
    CLIENT_HEADER,
    CONNECT_TIMEOUT,
    REQUEST_TIMEOUT,
    ApiClient,
    ServerEvent,
    ServerUnreachable,
    _json_object,
)
from duragent.client.sse import comment_event, read_sse

_READ_CHUNK = 64 * 1024
#: What a broken or cut-off answer raises while it is read.
_BROKEN = (OSError, EOFError, asyncio.LimitOverrunError, ValueError)


class AsyncioApiClient(ApiClient):
    """One asyncio connection per request to an `http://` server; nothing stays open between them.

    `message_sent` tells whether a stream request that carries a message (POST /stream) went out.
    """

    def __init__(self, base_url: str, *, token: str | None = None):
        super().__init__(base_url, token=token)
        self._host, self._port, self._prefix = _address(self.base_url)
        #: True once a POST /stream reached the server: from then on, retrying elsewhere could send twice.
        self.message_sent = False

    def move_to(self, base_url: str) -> None:
        """Talk to the server at `base_url` from now on (the workspace's server started again)."""
        super().move_to(base_url)
        self._host, self._port, self._prefix = _address(self.base_url)

    async def close(self) -> None:
        """Nothing stays open between requests."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        time_limit: float | None = REQUEST_TIMEOUT,
    ) -> tuple[int, dict[str, Any]]:
        """Send a request; the status and JSON body of a 2xx answer, an exception for anything else."""
        try:
            async with asyncio.timeout(time_limit):
                status, text = await self._exchange(method, path, body, params)
        except TimeoutError:
            raise ServerUnreachable(self.base_url, f"no answer within {time_limit:g}s") from None
        if status >= 400:
            raise self._error(status, text, path)
        return status, _json_object(text)

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        """GET /readyz: 200 when ready, 503 with problems."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                status, text = await self._exchange("GET", "/readyz", None, None)
        except TimeoutError:
            raise ServerUnreachable(self.base_url, "/readyz did not answer") from None
        return status, _json_object(text)

    async def _exchange(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str | int] | None,
    ) -> tuple[int, str]:
        response = await self._open(method, path, body, params, accept="application/json")
        try:
            return response.status, (await response.read()).decode("utf-8", "replace")
        except _BROKEN as exc:
            raise ServerUnreachable(self.base_url, _reason(exc)) from None
        finally:
            response.close()

    async def _sse(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[ServerEvent, None]:
        response = await self._open(
            method, path, body, params, accept="text/event-stream", sends_message=method == "POST"
        )
        try:
            if response.status >= 400:
                raise self._error(response.status, (await response.read()).decode("utf-8", "replace"), path)
            async for message in read_sse(response.chunks()):
                if not message.is_comment:
                    yield ServerEvent(message.id, message.event, message.json())
                elif (said := comment_event(message)) is not None:
                    yield ServerEvent(None, *said)
        except _BROKEN as exc:
            raise ServerUnreachable(self.base_url, _reason(exc)) from None
        finally:
            # Closing the stream is what detaches this terminal: it happens now, not when collected.
            response.close()

    async def _open(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str | int] | Mapping[str, str] | None,
        *,
        accept: str,
        sends_message: bool = False,
    ) -> _Response:
        """Connect, send the request, read the status line and headers."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port), CONNECT_TIMEOUT
            )
        except TimeoutError:
            raise ServerUnreachable(self.base_url, f"no connection within {CONNECT_TIMEOUT:g}s") from None
        except OSError as exc:
            raise ServerUnreachable(self.base_url, _reason(exc)) from None
        # Connected: from here on the server may have the message, so nobody may send it again.
        self.message_sent = self.message_sent or sends_message
        try:
            writer.write(self._head(method, path, body, params, accept))
            await writer.drain()
            status = _status(await reader.readline())
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
        except BaseException as exc:
            writer.close()
            if isinstance(exc, _BROKEN):
                raise ServerUnreachable(self.base_url, _reason(exc)) from None
            raise
        return _Response(status, headers, reader, writer)

    def _head(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str | int] | Mapping[str, str] | None,
        accept: str,
    ) -> bytes:
        target = self._prefix + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        data = json.dumps(body).encode() if body is not None else b""
        lines = [
            f"{method} {target} HTTP/1.1",
            f"Host: {_host_header(self._host, self._port)}",
            "Connection: close",
            f"Accept: {accept}",
            f"Content-Length: {len(data)}",
            f"{CLIENT_HEADER}: {self.client_id}",
        ]
        if body is not None:
            lines.append("Content-Type: application/json")
        if self.token:
            lines.append(f"Authorization: Bearer {self.token}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


class _Response:
    """An answer whose status line and headers have been read; owns its connection."""

    def __init__(
        self, status: int, headers: dict[str, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ):
        self.status = status
        self.headers = headers
        self.reader = reader
        self.writer = writer

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked, sized by Content-Length, or until the server closes)."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while size := _chunk_size(await self.reader.readline()):
                yield await self.reader.readexactly(size)
                await self.reader.readexactly(2)  # the CRLF after each chunk
            return
        length = self.headers.get("content-length")
        if length is None:
            while data := await self.reader.read(_READ_CHUNK):
                yield data
            return
        remaining = int(length)
        while remaining > 0:
            data = await self.reader.read(min(remaining, _READ_CHUNK))
            if not data:
                raise asyncio.IncompleteReadError(data, remaining)
            remaining -= len(data)
            yield data

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        """Close the connection."""
        self.writer.close()


def _chunk_size(line: bytes) -> int:
    """The size a chunk's header line announces (0: the last chunk); IncompleteReadError when the
    connection closed before it (a server that died mid-answer), not a parser's words."""
    if not line.endswith(b"\n"):
        raise asyncio.IncompleteReadError(line, None)
    return int(line.split(b";", 1)[0], 16)


def _status(line: bytes) -> int:
    """The status code of an HTTP/1.x status line; ValueError for anything else."""
    version, _, rest = line.decode("latin-1").partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP answer: {line[:40]!r}")
    return int(rest.split(" ", 1)[0])


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, EOFError):
        return "the server closed the connection"
    return str(exc) or type(exc).__name__


def _host_header(host: str, port: int) -> str:
    """The Host header's value: an IPv6 address goes in brackets (RFC 7230, as in a URL)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address(base_url: str) -> tuple[str, int, str]:
    """Host, port and path prefix of an http:// URL."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http:// URL: {base_url!r}")
    return parts.hostname, parts.port or 80, parts.path
