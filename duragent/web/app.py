"""The dashboard's wiring: templates, static files, login pages, its error pages, all its routes.

`add_dashboard(app, api_token=..., admin_token=...)` adds everything under `/ui` to the
server's application; the pages call the same library objects (`ServerState`) as the API.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from duragent.server.auth import admin_authorized
from duragent.server.lazy_routes import Route, add_lazy_routes
from duragent.server.problems import PROBLEM_CONTENT_TYPE
from duragent.web import schedules
from duragent.web.login import (
    LOGIN_COOKIE,
    LOGINS,
    UI_PREFIX,
    Logins,
    cookie_name,
    form_endpoint,
    mark_form_endpoint,
    read_form,
    safe_next,
    set_login_cookie,
)
from duragent.web.pages import TEMPLATES, Templates, html_page

HERE = Path(__file__).parent
#: Where `duragent ui` gets a one-time login link (guarded by the API token like all of /api/v1).
TICKET_PATH = "/api/v1/dashboard/login-ticket"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_SESSIONS = "duragent.web.sessions"
_MEMORY = "duragent.web.memory"
_HISTORY = "duragent.web.history"
_PROCESSES = "duragent.web.processes"
#: The pages whose modules are imported on their first request (`duragent.server.lazy_routes`).
PAGE_ROUTES: tuple[Route, ...] = (
    ("GET", f"{UI_PREFIX}/", f"{_SESSIONS}:list_sessions"),
    ("GET", f"{UI_PREFIX}/sessions", f"{_SESSIONS}:list_sessions"),
    ("POST", f"{UI_PREFIX}/sessions", f"{_SESSIONS}:start_session"),
    ("GET", f"{UI_PREFIX}/sessions/{{session_id}}", f"{_SESSIONS}:show_session"),
    # The same stream as /api/v1/sessions/{id}/events (positions, Last-Event-ID), with the cookie.
    ("GET", f"{UI_PREFIX}/sessions/{{session_id}}/events", f"{_SESSIONS}:follow_events_while_logged_in"),
    ("POST", f"{UI_PREFIX}/sessions/{{session_id}}/messages", f"{_SESSIONS}:send_message"),
    ("POST", f"{UI_PREFIX}/sessions/{{session_id}}/approve", f"{_SESSIONS}:answer_approval"),
    ("POST", f"{UI_PREFIX}/sessions/{{session_id}}/retry", f"{_SESSIONS}:retry_turn"),
    ("POST", f"{UI_PREFIX}/sessions/{{session_id}}/cancel", f"{_SESSIONS}:cancel_turn"),
    ("POST", f"{UI_PREFIX}/sessions/{{session_id}}/resume", f"{_SESSIONS}:resume_session"),
    ("POST", f"{UI_PREFIX}/sessions/{{session_id}}/end", f"{_SESSIONS}:end_session"),
    ("GET", f"{UI_PREFIX}/memory", f"{_MEMORY}:memory_index"),
    ("GET", f"{UI_PREFIX}/memory/{{agent}}/{{name}}", f"{_MEMORY}:memory_file"),
    ("POST", f"{UI_PREFIX}/memory/{{agent}}/{{name}}", f"{_MEMORY}:save_file"),
    ("GET", f"{UI_PREFIX}/history", f"{_HISTORY}:timeline"),
    ("GET", f"{UI_PREFIX}/history/{{sha}}", f"{_HISTORY}:revision"),
    ("POST", f"{UI_PREFIX}/history/{{sha}}/revert", f"{_HISTORY}:revert"),
    ("GET", f"{UI_PREFIX}/agents", "duragent.web.agents:agents"),
    ("GET", f"{UI_PREFIX}/gateways", "duragent.web.agents:gateways"),
)
#: After the schedule pages (registered at once: they keep the runs they started on the app).
PROCESS_ROUTES: tuple[Route, ...] = (
    ("GET", f"{UI_PREFIX}/processes", f"{_PROCESSES}:list_processes"),
    ("GET", f"{UI_PREFIX}/processes/{{handle}}", f"{_PROCESSES}:show_process"),
    ("POST", f"{UI_PREFIX}/processes/{{handle}}/kill", f"{_PROCESSES}:kill_process"),
)


def add_dashboard(app: web.Application, *, api_token: str | None, admin_token: str | None) -> None:
    """Serve the dashboard under /ui (login with either token; loopback browsers when none is set)."""
    app[TEMPLATES] = Templates(HERE / "templates")
    app[LOGINS] = Logins(api_token=api_token, admin_token=admin_token)
    app.router.add_get(UI_PREFIX, _to_front_page)
    app.router.add_get("/", _to_front_page)  # the server's address opened in a browser
    app.router.add_get(f"{UI_PREFIX}/login", login_page)
    app.router.add_post(f"{UI_PREFIX}/login", log_in)
    app.router.add_post(f"{UI_PREFIX}/logout", log_out)
    app.router.add_post(TICKET_PATH, login_ticket)
    app.router.add_static(f"{UI_PREFIX}/static", HERE / "static", append_version=True)
    add_lazy_routes(app, PAGE_ROUTES)
    schedules.add_routes(app)
    add_lazy_routes(app, PROCESS_ROUTES)


async def _to_front_page(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{UI_PREFIX}/")


async def login_page(request: web.Request) -> web.StreamResponse:
    """GET /ui/login: the token form, or (with `?ticket=` from `duragent ui`) straight in."""
    logins = request.app[LOGINS]
    ticket = request.query.get("ticket")
    if ticket:
        granted = logins.use_ticket(ticket)
        if granted is None:
            if logins.find(request.cookies.get(cookie_name(request))) is not None:
                # the link opened again (clicked twice, reopened) by the browser it logged in
                raise web.HTTPSeeOther(safe_next(request.query.get("next")))
            return _login_form(
                request, "That login link was used already or has expired: run `duragent ui` again."
            )
        return _logged_in(request, safe_next(request.query.get("next")), admin=granted.admin)
    return _login_form(request, None)


def _login_form(request: web.Request, problem: str | None, next_page: str | None = None) -> web.Response:
    """The login page, saying what went wrong with the last try (200: error statuses become error
    pages); after it, the browser goes to `next_page` (default: the query's `next`)."""
    import secrets

    form_token = secrets.token_urlsafe(24)
    context = {
        "problem": problem,
        "form_token": form_token,
        "next": safe_next(next_page if next_page is not None else request.query.get("next")),
        "needs_token": request.app[LOGINS].tokens_configured(),
        "ui": UI_PREFIX,
    }
    response = html_page(request, "login.html", context)
    response.set_cookie(
        cookie_name(request, LOGIN_COOKIE), form_token, path=UI_PREFIX, httponly=True, samesite="Strict"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@mark_form_endpoint
async def log_in(request: web.Request) -> web.StreamResponse:
    """POST /ui/login (token, form_token, next): check the token, set the login cookie."""
    import hmac

    form = await read_form(request)
    expected = request.cookies.get(cookie_name(request, LOGIN_COOKIE), "")
    offered = form.get("form_token", "")
    next_page = form.get("next")  # (kept for the next try: the page asked for before the login)
    if not expected or not hmac.compare_digest(offered.encode(), expected.encode()):
        return _login_form(request, "The login form expired: try again.", next_page)
    logins = request.app[LOGINS]
    token = form.get("token", "").strip()
    if not logins.token_accepted(token, request.remote):
        return _login_form(request, "That token is not valid.", next_page)
    admin = logins.admin_token_given(token, request.remote)
    return _logged_in(request, safe_next(form.get("next")), admin=admin)


def _logged_in(request: web.Request, location: str, *, admin: bool) -> web.StreamResponse:
    login_id, _ = request.app[LOGINS].start(admin=admin)
    response = web.Response(status=303, headers={"Location": location})
    set_login_cookie(request, response, login_id)
    response.del_cookie(cookie_name(request, LOGIN_COOKIE), path=UI_PREFIX)
    return response


@form_endpoint
async def log_out(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/logout: end the login."""
    request.app[LOGINS].end(request.cookies.get(cookie_name(request)))
    response = web.Response(status=303, headers={"Location": f"{UI_PREFIX}/login"})
    response.del_cookie(cookie_name(request), path=UI_PREFIX)
    return response


async def login_ticket(request: web.Request) -> web.Response:
    """POST /api/v1/dashboard/login-ticket: a one-time link that logs a browser in (for `duragent ui`);
    its login may use admin controls when the request also carries the admin token."""
    logins = request.app[LOGINS]
    ticket = logins.new_ticket(admin=admin_authorized(request, logins.admin_token))
    return web.json_response({"path": f"{UI_PREFIX}/login?ticket={ticket}"})


def dashboard_page(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """A reply under /ui as the browser gets it: with the headers every page gets, and an error
    as a readable page instead of problem+json."""
    # Pages run only their own script and are never framed by another site (clickjacking).
    if not response.prepared:  # an event stream has sent its headers already
        response.headers.update(SECURITY_HEADERS)
    if not isinstance(response, web.Response):
        return response
    if response.content_type != PROBLEM_CONTENT_TYPE or response.text is None:
        return response
    problem = json.loads(response.text)
    context = {
        "status": response.status,
        "title": problem.get("title", "Error"),
        "detail": problem.get("detail", ""),
        "ui": UI_PREFIX,
    }
    page = html_page(request, "error.html", context, status=response.status)
    page.headers.update(SECURITY_HEADERS)
    for name in ("Allow", "WWW-Authenticate"):
        if name in response.headers:
            page.headers[name] = response.headers[name]
    return page
