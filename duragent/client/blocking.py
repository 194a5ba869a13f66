"""`ApiClient` over the standard library's `http.client`: what a warm `duragent send` talks through.

Importing aiohttp costs more than a whole turn on a running server (0.1-0.3 s), and one command
sending one message needs no connection pool. The routes and the errors a person sees are
`ApiClient`'s own; only the transport differs. Stream reads run in a thread so the terminal's
spinner keeps turning while the model thinks.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

from duragent.client.http import (
    CONNECT_TIMEOUT,
    REQUEST_TIMEOUT,
    ApiClient,
    ServerEvent,
    ServerUnreachable,
    _json_object,
)
from duragent.client.sse import read_sse

_READ_CHUNK = 64 * 1024


class BlockingApiClient(ApiClient):
    """One `http.client` connection per request; `message_sent` tells whether a stream request went out."""

    def __init__(self, base_url: str, *, token: str | None = None):
        super().__init__(base_url, token=token)
        parts = urllib.parse.urlsplit(self.base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not an http:// URL: {base_url!r}")
        self._host, self._port, self._prefix = parts.hostname, parts.port or 80, parts.path
        #: True once a POST /stream reached the server: from then on, retrying elsewhere could send twice.
        self.message_sent = False

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
        connection = self._open(time_limit)
        try:
            response = self._send(connection, method, path, body, params, accept="application/json")
            status, text = response.status, response.read().decode("utf-8", "replace")
        except TimeoutError:
            raise ServerUnreachable(self.base_url, f"no answer within {time_limit:g}s") from None
        except OSError as exc:
            raise ServerUnreachable(self.base_url, _reason(exc)) from None
        finally:
            connection.close()
        if status >= 400:
            raise self._error(status, text, path)
        return status, _json_object(text)

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        """GET /readyz: 200 when ready, 503 with problems."""
        connection = self._open(REQUEST_TIMEOUT)
        try:
            response = self._send(connection, "GET", "/readyz", None, None, accept="application/json")
            return response.status, _json_object(response.read().decode("utf-8", "replace"))
        except OSError as exc:
            raise ServerUnreachable(self.base_url, _reason(exc)) from None
        finally:
            connection.close()

    async def _sse(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[ServerEvent]:
        connection = self._open(None)
        # Connected: from here on the server may have the message, so nobody may send it again.
        self.message_sent = self.message_sent or method == "POST"
        try:
            try:
                response = self._send(connection, method, path, body, params, accept="text/event-stream")
            except OSError as exc:
                raise ServerUnreachable(self.base_url, _reason(exc)) from None
            if response.status >= 400:
                raise self._error(response.status, response.read().decode("utf-8", "replace"), path)
            async for message in read_sse(_chunks(response)):
                if not message.is_comment:
                    yield ServerEvent(message.id, message.event, message.json())
        except OSError as exc:
            raise ServerUnreachable(self.base_url, _reason(exc)) from None
        finally:
            connection.close()

    def _open(self, time_limit: float | None) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=CONNECT_TIMEOUT)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            raise ServerUnreachable(self.base_url, _reason(exc)) from None
        assert connection.sock is not None
        connection.sock.settimeout(time_limit)
        return connection

    def _send(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str | int] | Mapping[str, str] | None,
        *,
        accept: str,
    ) -> http.client.HTTPResponse:
        target = self._prefix + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        headers = {"Accept": accept}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection.request(method, target, body=data, headers=headers)
        return connection.getresponse()


async def _chunks(response: http.client.HTTPResponse) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(response.read1, _READ_CHUNK):
        yield chunk


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
