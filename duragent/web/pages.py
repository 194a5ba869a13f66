"""Rendering dashboard pages: the Jinja environment, the context every page shares, redirects."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from duragent.server.problems import KEEP_BODY
from duragent.terminal_text import printable
from duragent.web.login import UI_PREFIX, Handler, current_login

if TYPE_CHECKING:
    import jinja2


class Templates:
    """The dashboard's Jinja environment, made when the first page is rendered.

    Importing jinja2 is ~0.1 s of CPU and ~4 MiB that a server would otherwise pay before it
    listens, whether or not anyone opens the dashboard.
    """

    def __init__(self, folder: Path):
        self._folder = folder
        self._environment: jinja2.Environment | None = None

    def render(self, template: str, context: Mapping[str, Any]) -> str:
        """The text of `template` with `context` (autoescaped; an unknown name is an error)."""
        if self._environment is None:
            import jinja2

            self._environment = jinja2.Environment(
                loader=jinja2.FileSystemLoader(self._folder),
                autoescape=jinja2.select_autoescape(default=True),
                undefined=jinja2.StrictUndefined,
                finalize=shown,
            )
            self._environment.filters["json_text"] = json_text
        return self._environment.get_template(template).render(context)


def shown(value: Any) -> Any:
    """A value as a page shows it: text with its control and bidirectional characters written out
    as escapes (`\\u2067`), as the terminal shows them (`terminal_text.printable`).

    In a browser, isolates and overrides reorder what is shown: a command waiting for approval
    could read `ls # notes.txt ; cat ../../run/tokens.json`, all after `ls` seemingly a comment,
    while bash runs the `cat`. A value already marked safe (`|e`, `|tojson`) is left as it is: a
    form field that must send back exactly what it holds (the memory editor, a call's id) is
    written `|e`.
    """
    if isinstance(value, str) and not hasattr(value, "__html__"):
        return printable(value)
    return value


def json_text(value: Any) -> str:
    """`value` as JSON text to show on a page: plain text, escaped as HTML and `shown` like any
    other (Jinja's `tojson` writes JSON for a <script> element, `<` as `\\u003c`, `é` as
    `\\u00e9`, and a tool call's arguments would not read as the model wrote them). A whole
    number stored as a float (`2.0`) is written `2`, as the page's script writes it live."""
    return json.dumps(_whole_floats_as_ints(value), ensure_ascii=False)


def _whole_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_floats_as_ints(item) for item in value]
    return value


TEMPLATES = web.AppKey("templates", Templates)


def html_page(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """`template` rendered with exactly `context`, as a text/html response."""
    text = request.config_dict[TEMPLATES].render(template, context)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def render(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """The page `template` with the login's CSRF token and the current section in its context."""
    login = current_login(request)
    section = template.split(".")[0].split("_")[0]
    shared = {"csrf": login.csrf, "ui": UI_PREFIX, "section": section, "admin": login.admin}
    response = html_page(request, template, {**shared, **context}, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def see_other(path: str) -> web.HTTPSeeOther:
    """After a form post: go to `path` (a GET), so reloading does not post again."""
    return web.HTTPSeeOther(location=path)


def admin_page(what: str) -> Callable[[Handler], Handler]:
    """A page showing what only the admin API serves (`what`, as a sentence's subject): a login not
    made with the admin token gets, in its place, a page saying so (403), as the API would refuse
    its token."""

    def guarded(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def page(request: web.Request) -> web.StreamResponse:
            if not current_login(request).admin:
                refusal = render(request, "admin_needed.html", {"what": what}, status=403)
                refusal[KEEP_BODY] = True  # this page is the answer, not an error page in its place
                return refusal
            return await handler(request)

        return page

    return guarded
