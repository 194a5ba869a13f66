"""The one middleware every request passes: each check of the server, in the order it must run.

1. A request line or header line too long: 414 or 431 (`problems.too_long`).
2. The request guard: Host, Origin and JSON bodies (`request_guard`).
3. The API and admin tokens for `/api/v1`, `/v1` and `/api/admin/v1` (`auth`).
4. The dashboard's login for `/ui` (`web.login`).
5. The route. Anything raised on the way becomes problem+json (`problems`), as do error
   replies in other formats; `/v1` routes send their problems in OpenAI's shape
   (`openai.errors`), dashboard pages as an HTML page with the dashboard's headers (`web.app`).

One middleware rather than one per check: each layer of aiohttp's chain costs every request
a call and a coroutine, and most of them apply to the routes under one prefix only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web
from aiohttp.typedefs import Middleware

from duragent.server import auth
from duragent.server.openai.errors import is_openai_path, openai_shaped
from duragent.server.problems import as_problem, error_problem, too_long
from duragent.server.request_guard import HostPolicy, guard_refusal
from duragent.web.app import dashboard_page
from duragent.web.login import UI_PREFIX, require_login

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_dashboard_path(path: str) -> bool:
    """True for `/ui` and everything under it."""
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def front_door(policy: HostPolicy, tokens: auth.Tokens) -> Middleware:
    """The middleware applying `policy` and `tokens`, and answering every error as a problem."""

    @web.middleware
    async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        dashboard = is_dashboard_path(path)
        response: web.StreamResponse | None = too_long(request)
        if response is None:
            try:
                response = guard_refusal(policy, request)
                if response is None:
                    response = auth.refusal(request, tokens)
                if response is None:
                    if dashboard:
                        require_login(request)
                    response = await handler(request)
            except Exception as exc:
                if isinstance(exc, ConnectionResetError) and _client_gone(request):
                    # The client hung up before its answer began (an event stream's headers, say):
                    # nobody reads it; 499 is how nginx logs a request its client abandoned. (A
                    # reset of another connection, to a peer worker, stays an error.)
                    return web.Response(status=499, reason="Client Closed Request")
                response = error_problem(request, exc)
                if response is None:
                    raise
        response = as_problem(request, response)
        if dashboard:
            return dashboard_page(request, response)
        if is_openai_path(path):
            return openai_shaped(response)
        return response

    return cast(Middleware, front_door)
