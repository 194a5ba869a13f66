"""Errors under `/v1` in OpenAI's format: `{"error": {"message", "type", "param", "code"}}`.

Every error of the server is produced once, as problem+json (`duragent.server.problems`);
`openai_shaped`, applied to the replies of `/v1` routes, rewrites their problems into the shape
OpenAI clients parse (the official SDKs raise `BadRequestError`, `AuthenticationError`,
`NotFoundError`... from the status and read `error.message`).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from duragent.server.problems import PROBLEM_CONTENT_TYPE, TYPE_PREFIX

PREFIX = "/v1"
#: Header naming the session a request continues (also sent back with the session used).
SESSION_HEADER = "X-Duragent-Session"
#: The header OpenAI's SDKs obey before retrying a 408/409/429/5xx answer (`false`: do not).
SHOULD_RETRY = "X-Should-Retry"

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> web.Response:
    """An error response in OpenAI's format."""
    return web.json_response({"error": error_body(status, message, code=code, param=param)}, status=status)


def error_body(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The `error` object OpenAI sends (also the payload of an error inside a stream)."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"message": message, "type": kind, "param": param, "code": code}


def is_openai_path(path: str) -> bool:
    """True for `/v1` and everything under it."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def openai_shaped(response: web.StreamResponse) -> web.StreamResponse:
    """A problem+json `response` of a `/v1` route in OpenAI's error format; any other as it is."""
    if not isinstance(response, web.Response):
        return response
    if response.content_type != PROBLEM_CONTENT_TYPE or response.text is None:
        return response
    problem = json.loads(response.text)
    message = str(problem.get("detail") or problem.get("title") or "error")
    errors = problem.get("errors") or []
    param = None
    if errors:
        param = str(errors[0].get("field", "")).removeprefix("body.").removeprefix("body") or None
        unsaid = [f"{e.get('field')}: {e.get('message')}" for e in errors if not _said(e, message)]
        if unsaid:
            message += ": " + "; ".join(unsaid)
    code = str(problem.get("type", "")).removeprefix(TYPE_PREFIX).replace("-", "_") or None
    converted = openai_error(response.status, message, code=code, param=param)
    for name in ("WWW-Authenticate", "Allow", "Retry-After", SHOULD_RETRY, SESSION_HEADER):
        if name in response.headers:
            converted.headers[name] = response.headers[name]
    return converted


def _said(error: dict[str, Any], detail: str) -> bool:
    """Whether the problem's `detail` already says `error` (a validation error's first one, or
    what is wrong with the whole body), which the message then does not say twice."""
    field, text = str(error.get("field")), str(error.get("message"))
    return f"{field}: {text}" in detail or (field == "body" and text in detail)
