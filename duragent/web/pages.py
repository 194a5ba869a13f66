"""Rendering dashboard pages: the Jinja environment, the context every page shares, redirects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from duragent.web.login import UI_PREFIX, current_login


def render(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """The page `template` with the login's CSRF token and the current section in its context."""
    login = current_login(request)
    shared = {"csrf": login.csrf, "ui": UI_PREFIX, "section": template.split(".")[0].split("_")[0]}
    response = aiohttp_jinja2.render_template(template, request, {**shared, **context}, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def see_other(path: str) -> web.HTTPSeeOther:
    """After a form post: go to `path` (a GET), so reloading does not post again."""
    return web.HTTPSeeOther(location=path)
