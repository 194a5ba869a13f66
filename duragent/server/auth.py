"""Who may call the API: bearer tokens for /api/v1 and /api/admin/v1.

`server.api_token` guards `/api/v1` and the OpenAI-compatible `/v1`, `admin.token` guards
`/api/admin/v1`; a token not set in duragent.yaml is the workspace's own, from
`<data_dir>/run/tokens.json` (`duragent.access_tokens`). The admin token may come as the bearer
token or in `X-Duragent-Admin-Token` (so one client can hold both). Binding a non-loopback
address without both tokens in duragent.yaml is refused at start unless `--insecure` is given:
the workspace's tokens are meant for the clients of one machine.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from dataclasses import dataclass

from aiohttp import web

from duragent.errors import UsageError
from duragent.server.problems import problem_response

API_PREFIX = "/api/v1"
#: The OpenAI-compatible API: guarded by the same API token.
OPENAI_PREFIX = "/v1"
ADMIN_PREFIX = "/api/admin/v1"
#: Carries the admin token on an `/api/v1` request whose `Authorization` holds the API token.
ADMIN_TOKEN_HEADER = "X-Duragent-Admin-Token"


class InsecureBind(UsageError):
    """A non-loopback bind without the tokens that would protect it."""


@dataclass(frozen=True)
class Tokens:
    """The configured bearer tokens (None: loopback clients only)."""

    api: str | None
    admin: str | None


#: The tokens the running server requires (set by `create_app`).
REQUIRED_TOKENS = web.AppKey("duragent_required_tokens", Tokens)


@functools.lru_cache(maxsize=256)  # asked of every request's peer; parsing the address costs more
def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tokens: Tokens, *, insecure: bool) -> None:
    """Refuse to listen on a non-loopback address without both tokens (unless `insecure`)."""
    if insecure or is_loopback(host):
        return
    missing = [
        name for name, value in (("server.api_token", tokens.api), ("admin.token", tokens.admin)) if not value
    ]
    if missing:
        raise InsecureBind(
            f"refusing to listen on {host} without {' and '.join(missing)}: anyone on the network could "
            "drive your agents. Set the token(s) in duragent.yaml (e.g. api_token: ${DURAGENT_API_TOKEN}), "
            "bind 127.0.0.1, or pass --insecure if something else protects this address"
        )


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authorized(request: web.Request, expected: str | None) -> bool:
    """With a token configured: the request carries it (constant-time compare); without: loopback peer."""
    if expected is None:
        return is_loopback(request.remote)
    given = bearer_token(request)
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def admin_authorized(request: web.Request, expected: str | None) -> bool:
    """The admin rule for an admin action reached through `/api/v1` (an inline agent spec).

    With an admin token configured, the request carries it, as its bearer token or in
    `X-Duragent-Admin-Token` (where `Authorization` holds the API token); without one: loopback peer.
    """
    if expected is None:
        return is_loopback(request.remote)
    offered = (bearer_token(request), request.headers.get(ADMIN_TOKEN_HEADER, "").strip())
    return any(token and hmac.compare_digest(token.encode(), expected.encode()) for token in offered)


def refusal(request: web.Request, tokens: Tokens) -> web.Response | None:
    """The 401/403 problem for a request to a guarded prefix without its token; None when it may pass."""
    path = request.path
    if _under(path, ADMIN_PREFIX):
        if admin_authorized(request, tokens.admin):
            return None
        if tokens.api is not None and authorized(request, tokens.api):
            detail = (
                "this is the API token; admin routes need the admin token (`admin_token` in "
                "<data_dir>/run/tokens.json, or admin.token in duragent.yaml)"
            )
            return problem_response(request, 403, detail, type_name="forbidden")
        return _refuse(request, tokens.admin, 403, "admin")
    if _under(path, API_PREFIX) or _under(path, OPENAI_PREFIX):
        if authorized(request, tokens.api):
            return None
        return _refuse(request, tokens.api, 401, "api")
    return None


def _under(path: str, prefix: str) -> bool:
    """`prefix` itself or a path below it (`/api/v1x` is not under `/api/v1`)."""
    return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")


def _refuse(request: web.Request, expected: str | None, status: int, realm: str) -> web.Response:
    if expected is None:
        detail = f"no {realm} token is configured, so only loopback clients are served"
        return problem_response(request, 403, detail, type_name="forbidden")
    if bearer_token(request) is None:
        detail = (
            f"this route needs `Authorization: Bearer <{realm} token>`; a client of this workspace finds "
            "it in <data_dir>/run/tokens.json"
        )
    else:
        detail = f"the {realm} token is not valid"
    headers = {"WWW-Authenticate": f'Bearer realm="duragent-{realm}"'} if status == 401 else None
    return problem_response(request, status, detail, headers=headers)
