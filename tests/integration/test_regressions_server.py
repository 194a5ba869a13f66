"""Regressions found in review: the HTTP server's error handling."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from duragent.server.auth import Tokens
from duragent.server.front_door import front_door
from duragent.server.problems import problem_middleware
from duragent.server.request_guard import HostPolicy


async def _client_went_away(request: web.Request) -> web.Response:
    return web.Response(status=499, reason="Client Closed Request")


async def test_a_client_closed_request_reply_is_a_499_problem_without_a_logged_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/hung-up", _client_went_away)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        with caplog.at_level(logging.ERROR):
            async with aiohttp.ClientSession() as http, http.get(server.make_url("/hung-up")) as response:
                status, reason = response.status, response.reason
                body = await response.json(content_type=None)
    finally:
        await server.close()
    assert (status, reason) == (499, "Client Closed Request")
    assert body["status"] == 499
    assert body["title"] == "Client Closed Request"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def _hung_up_before_the_headers(request: web.Request) -> web.StreamResponse:
    # the client closed the connection first: what `response.prepare` then raises
    assert request.transport is not None
    request.transport.close()
    raise ConnectionResetError("Cannot write to closing transport")


async def _peer_reset(request: web.Request) -> web.StreamResponse:
    # another connection (to a peer worker) was reset while the client still waits
    raise ConnectionResetError("Connection reset by peer")


async def test_a_client_gone_before_its_stream_began_is_answered_without_a_logged_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # `duragent chat --local` leaving at once closed its /events request as the server opened it:
    # the server logged "Error handling request" with a traceback; a reset of another connection
    # while the client waits is still an error it is told of
    app = web.Application(middlewares=[front_door(HostPolicy("127.0.0.1"), Tokens(api=None, admin=None))])
    app.router.add_get("/api/v1/sessions/s_1/events", _hung_up_before_the_headers)
    app.router.add_get("/api/v1/sessions/s_2/events", _peer_reset)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        with caplog.at_level(logging.ERROR):
            async with aiohttp.ClientSession() as http:
                with pytest.raises(aiohttp.ClientError):  # (the connection closed, however it shows)
                    async with http.get(server.make_url("/api/v1/sessions/s_1/events")):
                        pass
                gone_logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
                async with http.get(server.make_url("/api/v1/sessions/s_2/events")) as response:
                    peer_status = response.status
    finally:
        await server.close()
    assert gone_logged == []
    assert peer_status == 500
