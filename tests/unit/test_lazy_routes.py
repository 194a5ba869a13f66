"""Routes registered by name answer their first request, importing their module only then."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from duragent.server.lazy_routes import Handler, Route, add_lazy_routes, lazy_handler, loaded
from duragent.server.routes import ADMIN_ROUTES, API_ROUTES
from duragent.web.app import PAGE_ROUTES, PROCESS_ROUTES
from duragent.web.login import accepts_form

MODULE = "duragent_lazy_route_probe"
SOURCE = '''
from aiohttp import web

from duragent.web.login import mark_form_endpoint

async def hello(request: web.Request) -> web.Response:
    """Say hello."""
    return web.Response(text="hello " + request.match_info["name"])

@mark_form_endpoint
async def form(request: web.Request) -> web.Response:
    return web.Response(text="posted")
'''


@pytest.fixture
def probe_module(tmp_path: Path) -> Iterator[str]:
    """A handler module nobody has imported yet."""
    (tmp_path / f"{MODULE}.py").write_text(SOURCE)
    sys.path.insert(0, str(tmp_path))
    try:
        yield MODULE
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(MODULE, None)


@pytest.mark.parametrize("route", [*API_ROUTES, *ADMIN_ROUTES, *PAGE_ROUTES, *PROCESS_ROUTES])
def test_every_route_of_the_tables_names_an_async_handler_that_exists(route: Route) -> None:
    method, path, target = route
    handler = loaded(lazy_handler(target))
    assert inspect.iscoroutinefunction(handler), f"{method} {path}: {target}"
    assert handler.__name__ == target.partition(":")[2]


async def test_a_lazy_route_imports_its_module_on_its_first_request_and_answers_it(probe_module: str) -> None:
    app = web.Application()
    add_lazy_routes(app, [("GET", "/hello/{name}", f"{probe_module}:hello")])
    async with TestClient(TestServer(app)) as client:
        assert probe_module not in sys.modules
        first = await client.get("/hello/you")
        assert (first.status, await first.text()) == (200, "hello you")
        assert probe_module in sys.modules
        again = await client.get("/hello/again")
        assert (again.status, await again.text()) == (200, "hello again")


def test_what_a_handler_is_marked_with_is_read_from_the_handler_it_stands_for(probe_module: str) -> None:
    stand_in = lazy_handler(f"{probe_module}:hello")
    assert loaded(stand_in).__doc__ == "Say hello."
    assert stand_in.__name__ == "hello"


async def test_a_form_post_as_a_page_modules_first_request_is_known_for_a_form(probe_module: str) -> None:
    seen: list[bool] = []

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append(accepts_form(request))  # what the request guard asks before the handler runs
        return await handler(request)

    app = web.Application(middlewares=[guard])
    add_lazy_routes(app, [("POST", "/form", f"{probe_module}:form")])
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/form", data={"csrf": "x"})
        assert (response.status, await response.text(), seen) == (200, "posted", [True])


def test_a_route_target_without_a_function_is_refused() -> None:
    with pytest.raises(ValueError, match="module:function"):
        lazy_handler("duragent.server.routes.sessions")


async def test_a_lazy_get_route_answers_head_as_any_get_route_does(probe_module: str) -> None:
    app = web.Application()
    add_lazy_routes(app, [("GET", "/hello/{name}", f"{probe_module}:hello")])
    async with TestClient(TestServer(app)) as client:
        head = await client.head("/hello/you")
        assert head.status == 200
