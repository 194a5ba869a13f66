"""/openapi.json says, for every route, the token the server really asks for.

Every route of the running app is called over HTTP with each way of sending a token (none, the
API token, the admin token as bearer token, the admin token in X-Duragent-Admin-Token): the ways
the tokens check lets through must be exactly those the route's `security` lists.
"""

from __future__ import annotations

import re
from typing import Any

from duragent.server.openapi import build_document
from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

API_TOKEN = "api-secret"
ADMIN_TOKEN = "admin-secret"
#: Each way a client can send a token, named after the security scheme that describes it.
CREDENTIALS: dict[str, dict[str, str]] = {
    "anonymous": {},
    "bearer": {"Authorization": f"Bearer {API_TOKEN}"},
    "admin_bearer": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    "admin_header": {"X-Duragent-Admin-Token": ADMIN_TOKEN},
}
#: Stops the server when let through: called last.
SHUTDOWN = "/api/admin/v1/shutdown"


def documented_ways(security: list[dict[str, list[str]]]) -> set[str]:
    """The credentials `security` lets through: any one listed scheme; everything when empty."""
    if not security or {} in security:
        return set(CREDENTIALS)
    assert all(len(requirement) == 1 for requirement in security), security
    return {scheme for requirement in security for scheme in requirement}


async def let_through(api: Api, method: str, path: str) -> set[str]:
    """The credentials the server does not refuse for want of a token (401/403 naming a token)."""
    passed: set[str] = set()
    url = api.url(re.sub(r"\{[^}]+\}", "x", path))
    async with api.anonymous() as http:
        for way, headers in CREDENTIALS.items():
            async with http.request(method, url, headers=headers) as response:
                body = await response.text()
                if not (response.status in (401, 403) and "token" in body):
                    passed.add(way)
    return passed


async def test_every_routes_documented_security_is_what_the_server_enforces(
    start_api: ApiFactory,
) -> None:
    api = await start_api(git=False, api_token=API_TOKEN, admin_token=ADMIN_TOKEN)
    status, document = await api.call("GET", "/openapi.json")
    assert status == 200
    schemes = document["components"]["securitySchemes"]
    routes = sorted(
        ((path, method) for path, operations in document["paths"].items() for method in operations),
        key=lambda route: route[0] == SHUTDOWN,
    )
    assert len(routes) > 40  # every route of the app, the OpenAI-compatible ones included

    mismatches: dict[str, Any] = {}
    for path, method in routes:
        security = document["paths"][path][method].get("security", [])  # absent: no token
        assert all(scheme in schemes for requirement in security for scheme in requirement)
        documented = documented_ways(security)
        enforced = await let_through(api, method.upper(), path)
        if documented != enforced:
            mismatches[f"{method.upper()} {path}"] = {"documented": documented, "enforced": enforced}

    assert mismatches == {}
    assert document["paths"]["/v1/chat/completions"]["post"]["security"] == [{"bearer": []}]


async def test_the_document_lists_every_route_of_the_app(api: Api) -> None:
    """What the security test walks: the dashboard's browser pages (and `/`, leading to them) are
    the only routes left out."""
    document = build_document(api.server.app)
    listed = {(path, method) for path, operations in document["paths"].items() for method in operations}
    served = {
        (re.sub(r"\{([^}:]+)(?::[^}]*)?\}", r"{\1}", route.resource.canonical), route.method.lower())
        for route in api.server.app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "*")
    }
    browsers = {route for route in served if route[0].startswith("/ui") or route[0] == "/"}
    assert ("/", "get") in browsers
    assert served - browsers == listed
