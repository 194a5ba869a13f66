"""GET /openapi.json: the OpenAPI 3.1 document, built from the route table and the body models.

Handlers carry their documentation (`@documented(...)`: summary, body, query and response
models); the document walks `app.router`, so a route cannot exist without showing up here.
Each operation's `security` is the token `duragent.server.auth` asks of its path: the API token
for `/api/v1` and the OpenAI-compatible `/v1`, the admin token (as the bearer token or in
`X-Duragent-Admin-Token`) for `/api/admin/v1`, none (`[]`) for the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from duragent import __version__
from duragent.server.auth import ADMIN_PREFIX, ADMIN_TOKEN_HEADER, API_PREFIX, OPENAI_PREFIX
from duragent.server.lazy_routes import loaded

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])
#: What one status of a route answers: a body model, one of several (`oneOf`), or None for no body.
ResponseBody = type[BaseModel] | tuple[type[BaseModel], ...] | None
_ATTRIBUTE = "__duragent_openapi__"
_PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
#: The dashboard's prefix (`duragent.web.login.UI_PREFIX`; not imported: it pulls in Jinja).
_DASHBOARD = "/ui"
#: The tokens a route may ask for, as OpenAPI security schemes.
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "The API token: `server.api_token`, else `api_token` of <data_dir>/run/tokens.json.",
    },
    "admin_bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "The admin token: `admin.token`, else `admin_token` of <data_dir>/run/tokens.json.",
    },
    "admin_header": {
        "type": "apiKey",
        "in": "header",
        "name": ADMIN_TOKEN_HEADER,
        "description": "The admin token, in its own header (where `Authorization` holds the API token).",
    },
}
#: The schemes of each token, any one of which suffices: the API token as `/api/v1` and `/v1`
#: ask for it, the admin token either way `/api/admin/v1` takes it.
_SECURITY: dict[str, tuple[str, ...]] = {"api": ("bearer",), "admin": ("admin_bearer", "admin_header")}


@dataclass(frozen=True)
class RouteDoc:
    """What the OpenAPI document says about one handler."""

    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    responses: Mapping[int, ResponseBody] = field(default_factory=dict)
    text: bool = False
    sse: bool = False
    #: 200 is a file's bytes, with the file's own content type.
    binary: bool = False


def documented(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    responses: Mapping[int, ResponseBody] | None = None,
    text: bool = False,
    sse: bool = False,
    binary: bool = False,
) -> Callable[[HandlerT], HandlerT]:
    """Attach OpenAPI documentation to a handler."""

    def attach(handler: HandlerT) -> HandlerT:
        doc = RouteDoc(summary, body, query, dict(responses or {}), text, sse, binary)
        setattr(handler, _ATTRIBUTE, doc)
        return handler

    return attach


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of every route registered on `app`."""
    from duragent.server.bodies import ProblemOut

    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for route in app.router.routes():
        method = route.method.lower()
        if method in ("head", "*") or route.resource is None:
            continue
        path = route.resource.canonical
        if path in (_DASHBOARD, "/") or path.startswith(_DASHBOARD + "/"):
            # the dashboard's pages and forms (and `/`, which leads there) are for a browser
            # (docs/dashboard.md), not the API
            continue
        handler = loaded(route.handler)  # (a lazy route's module is imported here)
        doc: RouteDoc = getattr(handler, _ATTRIBUTE, None) or RouteDoc(
            (handler.__doc__ or "").strip().splitlines()[0] if handler.__doc__ else path
        )
        operation: dict[str, Any] = {
            "summary": doc.summary,
            "operationId": f"{method}_{handler.__name__}",
            "parameters": _path_parameters(path) + _query_parameters(doc.query),
            "responses": _responses(doc, schemas),
        }
        operation["security"] = route_security(path)
        if doc.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema_ref(doc.body, schemas)}},
            }
        errors = _error_statuses(path, method, doc)
        for status, description in errors.items():
            if path.startswith("/v1/") or path == "/v1":
                error = _openai_error(description)
            else:
                error = _problem_ref(schemas, ProblemOut, description)
            operation["responses"].setdefault(str(status), error)
        paths.setdefault(_PATH_PARAM.sub(r"{\1}", path), {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Duragent API", "version": __version__},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def route_security(path: str) -> list[dict[str, list[str]]]:
    """The token `auth.refusal` asks of a request to `path`, as an OpenAPI `security` list
    (any one entry suffices; `[]`: none)."""
    token = _token_for(path)
    return [{scheme: []} for scheme in _SECURITY[token]] if token else []


def _token_for(path: str) -> str | None:
    """Which token a request to `path` needs: "admin", "api" or None (the rule of `auth.refusal`)."""
    if _under(path, ADMIN_PREFIX):
        return "admin"
    if _under(path, API_PREFIX) or _under(path, OPENAI_PREFIX):
        return "api"
    return None


def _under(path: str, prefix: str) -> bool:
    """`prefix` itself or a path below it, as `auth` reads prefixes (`/api/v1x` is not under `/api/v1`)."""
    return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")


def _error_statuses(path: str, method: str, doc: RouteDoc) -> dict[int, str]:
    """The errors any route of this shape can answer, whatever its handler documents.

    Sent by the layers around every handler: authentication (401, and 403 for a missing or wrong
    admin token), body, query and path-name parsing (400, 413, 414 for an over-long request
    line), and a path naming something that does not exist (404).
    """
    errors: dict[int, str] = {}
    takes_body = doc.body is not None or method in ("post", "put", "patch")
    token = _token_for(path)
    if token == "api":
        errors[401] = "unauthorized: the API token is missing or wrong"
    elif token == "admin":
        errors[403] = "forbidden: the admin token is missing or wrong"
    named = bool(_PATH_PARAM.search(path))
    if takes_body or doc.query is not None or named:
        errors[400] = "invalid request: the errors name each invalid field (or the invalid name in the path)"
    if named:
        errors[404] = "not found"
    if takes_body:
        errors[413] = "the body is larger than the server accepts"
    if doc.query is not None:
        errors[414] = "the request line is longer than the server serves"
    return errors


def _openai_error(description: str) -> dict[str, Any]:
    """An error of the OpenAI-compatible routes: `{"error": {...}}` as OpenAI sends it."""
    error = {
        "type": "object",
        "required": ["message", "type"],
        "properties": {
            "message": {"type": "string"},
            "type": {"type": "string"},
            "param": {"type": ["string", "null"]},
            "code": {"type": ["string", "null"]},
        },
    }
    schema = {"type": "object", "required": ["error"], "properties": {"error": error}}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI document of this server."""
    return web.json_response(build_document(request.app))


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(path)
    ]


def _query_parameters(model: type[BaseModel] | None) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": _inline(prop)}
        for name, prop in schema.get("properties", {}).items()
    ]


def _inline(prop: dict[str, Any]) -> dict[str, Any]:
    # Query values are single scalars; `anyOf: [X, null]` becomes X (absent means null).
    options = [option for option in prop.get("anyOf", ()) if option.get("type") != "null"]
    base = dict(options[0]) if len(options) == 1 else {k: v for k, v in prop.items() if k != "anyOf"}
    for key in ("description", "default"):
        if key in prop:
            base[key] = prop[key]
    base.pop("title", None)
    return base


def _responses(doc: RouteDoc, schemas: dict[str, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, body in doc.responses.items():
        if body is None:
            responses[str(status)] = {"description": "no body"}
            continue
        models = body if isinstance(body, tuple) else (body,)
        refs = [_schema_ref(model, schemas) for model in models]
        responses[str(status)] = {
            "description": " Or: ".join(_first_line(model) for model in models),
            "content": {_content_type(status): {"schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}},
        }
    if doc.text:
        responses.setdefault(
            "200", {"description": "text", "content": {"text/plain": {"schema": {"type": "string"}}}}
        )
    if doc.binary:
        responses.setdefault(
            "200",
            {
                "description": "the bytes",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            },
        )
    if doc.sse:
        responses.setdefault(
            "200",
            {
                "description": "server-sent events",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
        )
    if not responses:
        responses["200"] = {"description": "OK"}
    return responses


def _first_line(model: type[BaseModel]) -> str:
    return (model.__doc__ or model.__name__).strip().splitlines()[0]


def _content_type(status: int) -> str:
    return "application/problem+json" if status >= 400 and status != 503 else "application/json"


def _problem_ref(schemas: dict[str, Any], model: type[BaseModel], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _schema_ref(model, schemas)}},
    }


def _schema_ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    if model.__name__ not in schemas:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}
