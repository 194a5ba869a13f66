"""Who may use the dashboard: a token login that sets a cookie, and CSRF tokens for every form.

Logging in with the API (or admin) token makes a login session kept in this process's
memory; its id travels in an `HttpOnly; SameSite=Strict` cookie scoped to `/ui`, so scripts
cannot read it and other sites' pages cannot send it. A login made with the admin token
(`Login.admin`) may also see the pages and use the controls whose API needs that token: the Agents,
Gateways and Processes pages (`duragent.web.pages.admin_page`), Kill a background process, revert a
change to an agent's definition (`require_admin`). Each login session has its own CSRF
token, a hidden field in every form; a form post without the right one is refused (403)
before anything else is read. A restart of the server ends every login.

The dashboard's forms are the one deliberate exception to the API's JSON-only request
bodies: a handler wrapped by `form_endpoint` reads `application/x-www-form-urlencoded`
bodies, and only after their CSRF token checks out (`FORM_ENDPOINT_ATTRIBUTE` marks them).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from duragent.server.auth import is_loopback
from duragent.server.lazy_routes import loaded

UI_PREFIX = "/ui"
#: The login cookie's name, before its port (`cookie_name`).
COOKIE = "duragent_ui"
#: A login form's own CSRF token (double-submit: cookie and hidden field must match).
LOGIN_COOKIE = "duragent_ui_login"
#: Set to True on handlers that accept CSRF-checked form bodies instead of JSON.
FORM_ENDPOINT_ATTRIBUTE = "duragent_form_endpoint"
#: How long a login lasts without use.
IDLE_LIMIT = 12 * 3600.0
#: Sent by a page refreshing its lists by itself: an open tab is not someone using the login.
REFRESH_HEADER = "X-Duragent-Refresh"
#: How long a one-time login ticket (`duragent ui`) may wait to be used.
TICKET_LIFETIME = 120.0
#: Largest form body read (memory files are the largest thing posted).
MAX_FORM_BYTES = 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FormHandler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


@dataclass
class Login:
    """One logged-in browser."""

    csrf: str
    #: Made with the admin token (or, none being configured, from loopback): may use admin pages and controls.
    admin: bool = False
    last_used: float = field(default_factory=time.monotonic)
    #: Set when the login ends: the session pages' open event streams close with it.
    ended: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class Ticket:
    """What a used one-time login ticket grants."""

    admin: bool


@dataclass
class Logins:
    """The dashboard's logins and one-time tickets, in memory; checks tokens against the server's."""

    api_token: str | None
    admin_token: str | None
    _logins: dict[str, Login] = field(default_factory=dict)
    #: Each ticket's time of making, and whether it logs in as admin.
    _tickets: dict[str, tuple[float, bool]] = field(default_factory=dict)

    def token_accepted(self, offered: str, remote: str | None) -> bool:
        """The API or admin token (constant-time); without tokens configured, any loopback browser."""
        expected = [t for t in (self.api_token, self.admin_token) if t]
        if not expected:
            return is_loopback(remote)
        return any(hmac.compare_digest(offered.encode(), token.encode()) for token in expected)

    def admin_token_given(self, offered: str, remote: str | None) -> bool:
        """Whether a login with `offered` may use admin controls: the admin token (constant-time);
        without one configured, a loopback browser (as `/api/admin/v1` serves loopback clients)."""
        if not self.admin_token:
            return is_loopback(remote)
        return hmac.compare_digest(offered.encode(), self.admin_token.encode())

    def tokens_configured(self) -> bool:
        """Whether logging in needs a token."""
        return bool(self.api_token or self.admin_token)

    def start(self, *, admin: bool) -> tuple[str, Login]:
        """A new login (`admin`: it may use admin controls): its cookie value and record."""
        login_id = secrets.token_urlsafe(32)
        login = Login(csrf=secrets.token_urlsafe(32), admin=admin)
        self._logins[login_id] = login
        return login_id, login

    def find(self, login_id: str | None, *, used: bool = True) -> Login | None:
        """The login of a cookie value, if it is current; `used`: this request keeps it alive."""
        if not login_id:
            return None
        login = self._logins.get(login_id)
        now = time.monotonic()
        if login is None or now - login.last_used > IDLE_LIMIT:
            self.end(login_id)
            return None
        if used:
            login.last_used = now
        return login

    def end(self, login_id: str | None) -> None:
        """Log out."""
        login = self._logins.pop(login_id, None) if login_id else None
        if login is not None:
            login.ended.set()

    def new_ticket(self, *, admin: bool) -> str:
        """A one-time login ticket for `duragent ui` (valid `TICKET_LIFETIME` seconds; `admin`:
        its login may use admin controls)."""
        now = time.monotonic()
        self._tickets = {t: made for t, made in self._tickets.items() if now - made[0] < TICKET_LIFETIME}
        ticket = secrets.token_urlsafe(32)
        self._tickets[ticket] = (now, admin)
        return ticket

    def use_ticket(self, ticket: str) -> Ticket | None:
        """What a ticket made less than `TICKET_LIFETIME` seconds ago grants, once; None after."""
        made = self._tickets.pop(ticket, None)
        if made is None or time.monotonic() - made[0] >= TICKET_LIFETIME:
            return None
        return Ticket(admin=made[1])


LOGINS = web.AppKey("duragent_ui_logins", Logins)


def cookie_name(request: web.Request, base: str = COOKIE) -> str:
    """`base` with the port the browser reached this server on (`duragent_ui_8080`).

    A browser sends a host's cookies to all its ports: with one name, logging in to a second
    server on the same machine (another workspace) would replace, and so end, the first's login.
    """
    return f"{base}_{request.url.port}"


def set_login_cookie(request: web.Request, response: web.StreamResponse, login_id: str) -> None:
    """The login cookie: HttpOnly, SameSite=Strict, only for /ui (Secure over https)."""
    response.set_cookie(
        cookie_name(request),
        login_id,
        path=UI_PREFIX,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def current_login(request: web.Request) -> Login:
    """The login of a request the middleware let through."""
    login = _login_of(request)
    if login is None:
        raise web.HTTPFound(f"{UI_PREFIX}/login")
    return login


def _login_of(request: web.Request) -> Login | None:
    """The request's current login; a page refreshing by itself does not count as using it."""
    used = REFRESH_HEADER not in request.headers
    return request.app[LOGINS].find(request.cookies.get(cookie_name(request)), used=used)


def require_admin(request: web.Request, action: str) -> None:
    """Refuse (403) `action` to a login not made with the admin token, as the API would."""
    if not current_login(request).admin:
        raise web.HTTPForbidden(
            text=f"{action} needs a login made with the admin token (admin.token): "
            "log out, then log in with it"
        )


def _public(path: str) -> bool:
    return path in (f"{UI_PREFIX}/login",) or path.startswith(f"{UI_PREFIX}/static/")


def require_login(request: web.Request) -> None:
    """Send a browser without a login to the login page (pages) or refuse it (posts, streams).

    Asked of every request under /ui; the login page and static files need no login.
    """
    if _public(request.path) or _login_of(request) is not None:
        return
    if request.method == "GET" and "text/event-stream" not in request.headers.get("Accept", ""):
        raise web.HTTPFound(f"{UI_PREFIX}/login?next={_next(request)}")
    raise web.HTTPUnauthorized(text="log in to the dashboard first (/ui/login)")


def _next(request: web.Request) -> str:
    from urllib.parse import quote

    return quote(request.rel_url.path_qs, safe="")


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a dashboard path, never another site."""
    if value and value.startswith(UI_PREFIX) and not value.startswith("//") and "\\" not in value:
        return value
    return UI_PREFIX + "/"


async def read_form(request: web.Request) -> dict[str, str]:
    """The urlencoded form body, one value per field (415 for other types, 413 when too large)."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise web.HTTPUnsupportedMediaType(text="the dashboard's forms are sent urlencoded")
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM_BYTES, actual_size=request.content_length)
    form = await request.post()
    return {name: value for name, value in form.items() if isinstance(value, str)}


def accepts_form(request: web.Request) -> bool:
    """True for an urlencoded post to a dashboard form endpoint (which checks its CSRF token itself).

    The server's JSON-only body rule asks this before refusing a form: the one exception it makes.
    """
    handler = loaded(request.match_info.handler)  # (a dashboard page's module may not be imported yet)
    return bool(getattr(handler, FORM_ENDPOINT_ATTRIBUTE, False)) and (
        request.content_type == "application/x-www-form-urlencoded"
    )


def mark_form_endpoint(handler: Handler) -> Handler:
    """Mark a handler that reads a form and checks its own CSRF token (the login form)."""
    setattr(handler, FORM_ENDPOINT_ATTRIBUTE, True)
    return handler


def form_endpoint(handler: FormHandler) -> Handler:
    """A dashboard form post: read the form, refuse it without this login's CSRF token, then handle it."""

    async def checked(request: web.Request) -> web.StreamResponse:
        login = current_login(request)
        form = await read_form(request)
        offered = form.get("csrf", "")
        if not offered or not hmac.compare_digest(offered.encode(), login.csrf.encode()):
            raise web.HTTPForbidden(
                text="the form's CSRF token is missing or stale: reload the page and retry"
            )
        return await handler(request, form)

    checked.__doc__ = handler.__doc__
    checked.__name__ = handler.__name__
    return mark_form_endpoint(checked)
