"""An async client for Duragent's HTTP API: JSON routes, SSE streams, problem+json errors.

Every request carries the API token (`server.api_token`, else `DURAGENT_API_TOKEN`, else the
workspace's `<data_dir>/run/tokens.json`: `duragent.access_tokens`). Errors a person will meet
become exceptions whose message says what happened and how to fix it; the CLI prints that
message as is.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Self

from duragent.client.sse import comment_event, read_sse
from duragent.errors import DuragentError, NotFound

if TYPE_CHECKING:
    import aiohttp

    from duragent.config import DuragentConfig

TOKEN_ENV = "DURAGENT_API_TOKEN"
#: Seconds to wait for a TCP connection before calling the server unreachable.
#: The header in which a client says which it is (`ApiClient.client_id`): a session then counts a
#: terminal's event stream and the message it is sending as one client attached, not two.
CLIENT_HEADER = "X-Duragent-Client"
CONNECT_TIMEOUT = 5.0
#: Seconds a plain (non-turn) request may take.
REQUEST_TIMEOUT = 30.0


class ServerUnreachable(DuragentError):
    """No server answers at the URL."""

    def __init__(self, url: str, reason: str):
        super().__init__(
            f"cannot reach the Duragent server at {url} ({reason}); is it running? "
            "`duragent serve status` tells, `duragent serve` starts it (chat and send start one "
            "themselves unless --server names another)"
        )
        self.url = url
        self.reason = reason


class TurnCutOff(ServerUnreachable):
    """The server stopped answering in the middle of a turn: the message is stored in the session,
    and the turn goes on (or waits) there once a server runs again."""

    def __init__(self, url: str, reason: str, session_id: str):
        DuragentError.__init__(
            self,
            f"the server at {url} stopped answering in the middle of the turn ({reason}); the "
            f"message is stored in session {session_id}: `duragent attach {session_id}` shows what "
            "became of it",
        )
        self.url = url
        self.reason = reason
        self.session_id = session_id


class ApiError(DuragentError):
    """The server answered with an error (a problem+json document when it is ours)."""

    def __init__(self, status: int, detail: str, problem: Mapping[str, Any] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.problem: dict[str, Any] = dict(problem or {})


class Unauthorized(ApiError):
    """401/403: the API token is missing, wrong, or the server serves only loopback clients."""


class SessionNotFound(ApiError, NotFound):
    """The session id is not known to the server."""


class AgentNotFound(NotFound):
    """No agent of that name; the message lists the known ones."""

    def __init__(self, name: str, known: list[str]):
        names = ", ".join(known) if known else "none (add one with `duragent agent create NAME`)"
        super().__init__(f"unknown agent {name!r}; known agents: {names}")
        self.name = name
        self.known = known


class SessionGone(ApiError):
    """The session has ended and takes no more messages."""


class ServerEvent(NamedTuple):
    """One event of a session's stream: its position (`"12"`, `"12.3"`), name and JSON data."""

    id: str | None
    event: str
    data: dict[str, Any]


def api_token(config: DuragentConfig | None) -> str | None:
    """The API token every CLI request sends: `server.api_token`, DURAGENT_API_TOKEN, the workspace's."""
    from duragent.access_tokens import client_tokens

    tokens = client_tokens(config)
    return tokens.api if tokens is not None and tokens.api else None


def admin_token(config: DuragentConfig) -> str | None:
    """The admin token: `admin.token`, DURAGENT_ADMIN_TOKEN, the workspace's."""
    from duragent.access_tokens import client_tokens

    tokens = client_tokens(config)
    return tokens.admin if tokens is not None and tokens.admin else None


class ApiClient:
    """A connection pool to one Duragent server; use as `async with ApiClient(url) as api:`."""

    def __init__(self, base_url: str, *, token: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token
        #: Sent with every request (`CLIENT_HEADER`): this terminal's event stream and the message
        #: it sends count as one client attached to the session, not two.
        self.client_id = os.urandom(8).hex()
        self._http: aiohttp.ClientSession | None = None

    def move_to(self, base_url: str) -> None:
        """Talk to the server at `base_url` from now on (the workspace's server started again)."""
        self.base_url = base_url.rstrip("/")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def http(self) -> aiohttp.ClientSession:
        """The underlying aiohttp session (created on first use, inside the running loop)."""
        import aiohttp  # here, not at import: the fast paths never load it (client.asyncio_client)

        if self._http is None:
            headers = {CLIENT_HEADER: self.client_id}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._http = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
            )
        return self._http

    def url(self, path: str) -> str:
        """The absolute URL of an API path."""
        return self.base_url + path

    # --- plain requests ----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        time_limit: float | None = REQUEST_TIMEOUT,
    ) -> tuple[int, dict[str, Any]]:
        """Send a request; the status and JSON body of a 2xx answer, an exception for anything else."""
        import aiohttp

        try:
            async with self.http.request(
                method,
                self.url(path),
                json=body,
                params=params,
                timeout=aiohttp.ClientTimeout(total=time_limit, sock_connect=CONNECT_TIMEOUT),
            ) as response:
                text = await response.text()
                if response.status >= 400:
                    raise self._error(response.status, text, path)
                return response.status, _json_object(text)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ServerUnreachable(self.base_url, _reason(exc)) from None
        except TimeoutError:
            raise ServerUnreachable(self.base_url, f"no answer within {time_limit:g}s") from None

    async def get(self, path: str, params: Mapping[str, str | int] | None = None) -> dict[str, Any]:
        """GET a JSON object."""
        return (await self.request("GET", path, params=params))[1]

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        """GET /readyz: 200 when ready, 503 with problems (both carry `workspace_hash`)."""
        import aiohttp

        try:
            async with self.http.get(
                self.url("/readyz"), timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            ) as response:
                return response.status, _json_object(await response.text())
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ServerUnreachable(self.base_url, _reason(exc)) from None
        except TimeoutError:
            raise ServerUnreachable(self.base_url, "/readyz did not answer") from None

    # --- agents ------------------------------------------------------------------------------

    async def agents(self) -> list[dict[str, Any]]:
        """Every agent the server serves: `{name, description?, version?}`."""
        return list((await self.get("/api/v1/agents")).get("agents", []))

    async def agent(self, name: str) -> dict[str, Any]:
        """One agent's definition; AgentNotFound listing the known agents when there is none."""
        try:
            return await self.get(f"/api/v1/agents/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            raise AgentNotFound(name, [a["name"] for a in await self.agents()]) from None

    # --- sessions ----------------------------------------------------------------------------

    async def create_session(self, agent: str, *, on_disconnect: str | None = None) -> dict[str, Any]:
        """POST /api/v1/sessions: a new session of `agent`."""
        body: dict[str, Any] = {"agent": agent}
        if on_disconnect:
            body["on_disconnect"] = on_disconnect
        try:
            return (await self.request("POST", "/api/v1/sessions", body=body))[1]
        except ApiError as exc:
            if exc.status != 404:
                raise
            raise AgentNotFound(agent, [a["name"] for a in await self.agents()]) from None

    async def sessions(
        self, *, agent: str | None = None, status: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Sessions on the server, newest activity first (every page, up to `limit`)."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(found) < limit:
            params: dict[str, str | int] = {"limit": min(limit - len(found), 1000)}
            if agent:
                params["agent"] = agent
            if status:
                params["status"] = status
            if cursor:
                params["cursor"] = cursor
            page = await self.get("/api/v1/sessions", params)
            found.extend(page.get("sessions", []))
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return found

    async def session(self, session_id: str) -> dict[str, Any]:
        """GET /api/v1/sessions/{id}."""
        return await self.get(f"/api/v1/sessions/{session_id}")

    async def end_session(self, session_id: str) -> None:
        """POST /api/v1/sessions/{id}/end: end the session (its files stay)."""
        await self.request("POST", f"/api/v1/sessions/{session_id}/end")

    async def messages(
        self, session_id: str, *, after: int | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """One page of a session's history: `{messages: [...], next_after}`."""
        params: dict[str, str | int] = {"limit": limit}
        if after is not None:
            params["after"] = after
        return await self.get(f"/api/v1/sessions/{session_id}/messages", params)

    async def send(self, session_id: str, content: str) -> tuple[int, dict[str, Any]]:
        """POST /messages: waits for the reply (200), a pending approval or a queue place (202)."""
        return await self.request(
            "POST", f"/api/v1/sessions/{session_id}/messages", body={"content": content}, time_limit=None
        )

    async def approve(self, session_id: str, call_id: str, decision: str) -> tuple[int, dict[str, Any]]:
        """POST /approve with allow_once, allow_always or deny; waits like /messages."""
        body = {"call_id": call_id, "decision": decision}
        return await self.request(
            "POST", f"/api/v1/sessions/{session_id}/approve", body=body, time_limit=None
        )

    async def cancel(self, session_id: str) -> dict[str, Any]:
        """POST /cancel: stop the running turn."""
        return (await self.request("POST", f"/api/v1/sessions/{session_id}/cancel"))[1]

    async def resume(self, session_id: str) -> dict[str, Any]:
        """POST /resume: continue a paused session."""
        return (await self.request("POST", f"/api/v1/sessions/{session_id}/resume"))[1]

    async def retry(self, session_id: str) -> dict[str, Any]:
        """POST /retry: run the last turn again when it failed or was cancelled."""
        return (await self.request("POST", f"/api/v1/sessions/{session_id}/retry"))[1]

    # --- streams -----------------------------------------------------------------------------

    def events(self, session_id: str, *, after: str | None = None) -> AsyncIterator[ServerEvent]:
        """GET /events: everything after `after` (None: live only), then live, until closed."""
        params = {"after": after} if after is not None else None
        return self._sse("GET", f"/api/v1/sessions/{session_id}/events", params=params)

    def stream(self, session_id: str, content: str) -> AsyncGenerator[ServerEvent, None]:
        """POST /stream: the events of one turn for `content`, ending with the turn."""
        return self._sse("POST", f"/api/v1/sessions/{session_id}/stream", body={"content": content})

    async def _sse(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[ServerEvent, None]:
        import aiohttp

        try:
            async with self.http.request(
                method, self.url(path), params=params, json=body, headers={"Accept": "text/event-stream"}
            ) as response:
                if response.status >= 400:
                    raise self._error(response.status, await response.text(), path)
                async for message in read_sse(response.content.iter_any()):
                    if not message.is_comment:
                        yield ServerEvent(message.id, message.event, message.json())
                    elif (said := comment_event(message)) is not None:
                        yield ServerEvent(None, *said)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ServerUnreachable(self.base_url, _reason(exc)) from None

    # --- errors ------------------------------------------------------------------------------

    def _error(self, status: int, text: str, path: str) -> ApiError:
        try:
            problem, foreign = _json_object(text), False
        except ValueError:
            problem, foreign = {}, True
        detail = str(problem.get("detail") or text.strip() or f"HTTP {status}")
        if status == 401:
            return Unauthorized(
                status,
                f"the server at {self.base_url} refused the request (401: {detail}); set "
                f"{TOKEN_ENV} or server.api_token in duragent.yaml to the server's API token",
                problem,
            )
        if status == 403:
            return Unauthorized(
                status,
                f"the server at {self.base_url} refused the request (403: {detail}); configure "
                f"server.api_token on the server and set {TOKEN_ENV} here",
                problem,
            )
        if foreign:
            # Not Duragent's problem+json: another program answers at the URL (a web server's HTML
            # error page, say), whose page would only bury the one thing to say.
            return ApiError(
                status,
                f"the server at {self.base_url} answered {path} with HTTP {status} and no Duragent "
                "error: not a Duragent server? (`duragent serve status` shows the workspace's URL)",
            )
        if status == 404 and "/sessions/" in path and "session" in detail.lower():
            return SessionNotFound(status, f"{detail}; list sessions with `duragent attach --list`", problem)
        if status in (409, 410) and "ended" in detail:
            return SessionGone(status, f"{detail} (`duragent chat --new` starts one)", problem)
        return ApiError(status, f"{detail} (HTTP {status} from {path})", problem)


def _json_object(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def _reason(exc: aiohttp.ClientConnectionError | aiohttp.ClientPayloadError) -> str:
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.strerror or "connection refused"
    if isinstance(exc, aiohttp.ClientPayloadError):
        # (the body was cut off: the server died or was killed while it answered)
        return "the server closed the connection before its answer was complete"
    return str(exc) or type(exc).__name__
