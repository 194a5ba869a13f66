"""What a web page cannot do to a local server: Host, Origin and Content-Type checks.

A browser lets any page send requests to 127.0.0.1. Three checks, before any route runs, keep a
page from driving the server:

- `Host` must name this server: a loopback name or address, the address it is bound to (any IP
  address when bound to all interfaces), or a name in `server.allowed_hosts`. A DNS-rebinding page
  always arrives with its own DNS name in `Host`, so it gets 421.
- `Origin`, when sent, must be this server's own origin (the `Host` it was reached by) or one listed
  in `server.allowed_origins`: a cross-site request gets 403. CORS headers are sent only to the
  listed origins.
- A request with a body must say `Content-Type: application/json` (415): a form or a `text/plain`
  "simple request" cannot smuggle JSON past the browser's preflight.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web

from duragent.server.problems import problem_response
from duragent.web.login import accepts_form

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "*"})
ANY = "*"
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_.])?")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID, X-Duragent-Admin-Token, X-Duragent-Session"
#: Response headers a listed origin's scripts may read (the session an OpenAI-style request used).
CORS_EXPOSED = "X-Duragent-Session"
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def split_host(value: str) -> tuple[str, int | None] | None:
    """`"[::1]:8080"` -> `("::1", 8080)`; None when the header is not a host[:port]."""
    try:
        parts = urlsplit(f"//{value}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    if _ip(host) is None and not _HOST_NAME.fullmatch(host):
        return None
    return host.lower(), port


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


class HostPolicy:
    """Which `Host` names and `Origin`s a server bound to `bind` accepts."""

    def __init__(self, bind: str, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = ()):
        self.bind = bind.strip("[]").lower()
        self.allowed_hosts = {host.lower().rstrip(".") for host in allowed_hosts}
        self.allowed_origins = {origin.rstrip("/").lower() for origin in allowed_origins}
        # Every request asks about its Host header, and clients send the same one or two values:
        # parsing it (a URL split, an IP address) costs more than the rest of the guard.
        self.answers_to = functools.lru_cache(maxsize=256)(self._answers_to)

    def _answers_to(self, raw_host: str) -> bool:
        """True for a `Host` header value naming this server (`answers_to` caches it)."""
        parsed = split_host(raw_host)
        return parsed is not None and self.host_allowed(parsed[0])

    def host_allowed(self, host: str) -> bool:
        """True for a name or address this server answers to."""
        if ANY in self.allowed_hosts or host in LOOPBACK_NAMES or host.rstrip(".") in self.allowed_hosts:
            return True
        address = _ip(host)
        if address is None:
            return False
        # An IP literal cannot be a rebinding attack (no DNS name involved): allow this server's own.
        return address.is_loopback or self.bind in WILDCARD_BINDS or address == _ip(self.bind)

    def origin_allowed(self, origin: str, request_host: str) -> bool:
        """True when `origin` is the origin the request was sent to, or listed."""
        normalised = origin.rstrip("/").lower()
        if ANY in self.allowed_origins or normalised in self.allowed_origins:
            return True
        parts = urlsplit(normalised)
        return parts.scheme in ("http", "https") and parts.netloc == request_host.lower()

    def cors_listed(self, origin: str) -> bool:
        """Whether `origin` was listed in `server.allowed_origins` (so it gets CORS headers)."""
        return ANY in self.allowed_origins or origin.rstrip("/").lower() in self.allowed_origins


def is_json(content_type: str) -> bool:
    """`application/json` or an `application/*+json` type."""
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _has_body(request: web.Request) -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def guard_refusal(policy: HostPolicy, request: web.Request) -> web.StreamResponse | None:
    """The answer to a request `policy` or the JSON-body rule refuses (or to a CORS preflight);
    None for a request that may go on to its route."""
    raw_host = request.headers.get("Host", "")
    if not policy.answers_to(raw_host):
        detail = (
            f"this server does not answer to Host {raw_host!r}; list the name in server.allowed_hosts "
            "to reach it that way"
        )
        return problem_response(request, 421, detail, type_name="misdirected")
    origin = request.headers.get("Origin")
    if origin is not None:
        if not policy.origin_allowed(origin, raw_host):
            detail = f"requests from origin {origin!r} are refused; list it in server.allowed_origins"
            return problem_response(request, 403, detail, type_name="forbidden-origin")
        if request.method == "OPTIONS" and policy.cors_listed(origin):
            asked = request.headers.get("Access-Control-Request-Headers", "")
            return web.Response(status=204, headers=_cors_headers(origin, preflight=True, asked=asked))
    # An empty body needs no type (clients send `application/octet-stream` for a bodiless POST).
    if (
        request.method in BODY_METHODS
        and _has_body(request)
        and not is_json(request.content_type)
        and not accepts_form(request)  # the dashboard's forms check their own CSRF token
    ):
        detail = f"the body must be JSON (Content-Type: application/json), got {request.content_type!r}"
        return problem_response(request, 415, detail, type_name="unsupported-media-type")
    return None


def add_cors(app: web.Application, policy: HostPolicy) -> None:
    """CORS headers on every response (streams too) to the origins `policy` lists."""
    if not policy.allowed_origins:
        return  # nobody is listed: no response needs looking at

    async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and policy.cors_listed(origin):
            response.headers.update(_cors_headers(origin, preflight=False))

    app.on_response_prepare.append(cors_headers)


def _cors_headers(origin: str, *, preflight: bool, asked: str = "") -> dict[str, str]:
    """CORS headers for a listed `origin`; a preflight allows the headers it `asked` for too.

    A listed origin is trusted by the owner, and its requests still need the token: allowing the
    headers its client library adds (the OpenAI SDK's `X-Stainless-*`, say) costs nothing, and
    without them the browser refuses to send the request at all.
    """
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if not preflight:
        return headers | {"Access-Control-Expose-Headers": CORS_EXPOSED}
    extra = [name.strip() for name in asked.split(",") if _HEADER_NAME.fullmatch(name.strip())]
    return headers | {
        "Access-Control-Allow-Methods": CORS_METHODS,
        "Access-Control-Allow-Headers": ", ".join([CORS_HEADERS, *extra]),
        "Access-Control-Max-Age": "600",
    }
