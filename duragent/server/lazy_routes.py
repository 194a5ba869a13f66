"""Routes whose handler module is imported on the route's first request, not at start.

`/readyz` needs none of the API's and dashboard's handler modules (sessions, OpenAI, admin,
dashboard pages...), and importing them, with the body models and templates helpers they pull
in, was a share of every start. A route table names each handler as `"module:function"`;
`add_lazy_routes` registers a stand-in for it that imports the module the first time one of its
routes is requested (a few milliseconds, on the event loop as the start's own imports are) and
from then on calls the handler straight away.

What is read from a handler before it runs (its OpenAPI documentation, the dashboard's mark
on form endpoints) is read from `loaded(handler)`, the handler a stand-in stands for.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: One route: its method, its path and the handler answering it, as `"package.module:function"`.
Route = tuple[str, str, str]
#: On a stand-in: the function that imports and returns the handler it stands for.
_LOADER = "__duragent_load_handler__"


def add_lazy_routes(app: web.Application, routes: Iterable[Route]) -> None:
    """Register `routes` in their order, each module imported on its first request."""
    for method, path, target in routes:
        if method == "GET":
            app.router.add_get(path, lazy_handler(target))  # (and HEAD, as add_get gives it)
        else:
            app.router.add_route(method, path, lazy_handler(target))


def lazy_handler(target: str) -> Handler:
    """A handler standing for `target` (`"module:function"`), imported when first called."""
    module, _, name = target.partition(":")
    if not module or not name:
        raise ValueError(f"a lazy route names its handler as 'module:function', got {target!r}")
    handler: Handler | None = None

    def load() -> Handler:
        nonlocal handler
        if handler is None:
            handler = getattr(importlib.import_module(module), name)
        return handler

    async def stand_in(request: web.Request) -> web.StreamResponse:
        return await (handler or load())(request)

    stand_in.__name__ = stand_in.__qualname__ = name
    stand_in.__module__ = module
    setattr(stand_in, _LOADER, load)
    return stand_in


def loaded(handler: Handler) -> Handler:
    """The handler `handler` stands for (imported now if it was not yet); any other as it is."""
    load: Callable[[], Handler] | None = getattr(handler, _LOADER, None)
    return handler if load is None else load()
