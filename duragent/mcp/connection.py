"""One MCP server: started on first use, restarted with backoff when it dies, stopped on close.

The SDK's client lives inside one task (its transports are task-scoped context managers):
`McpConnection` runs that task, and every other task (the turns calling tools) goes through
`tools()` and `call()`, which wait for the server to be running. A stdio server whose process
exits, or an HTTP server a call cannot reach, is connected again after a pause that doubles
on each failure (`BACKOFF_FIRST` up to `BACKOFF_MAX`, back to the start once a connection
stayed up for `STABLE_AFTER`).

A stdio server's stderr is logged a line at a time (`duragent.mcp.stderr`, INFO), and an attempt
that fails says the last line it wrote there; an HTTP server's error status is said the same way:
"Connection closed" alone does not tell a user to set a missing key or fix a token.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from duragent import __version__
from duragent.child_lifetime import executable, tied_to_this_process
from duragent.errors import DuragentError
from duragent.mcp.naming import tool_names
from duragent.mcp.spec import McpServerSpec
from duragent.secrets import SecretGuard

if TYPE_CHECKING:
    import mcp_types
    from mcp import Client

log = logging.getLogger(__name__)
#: What stdio servers write to stderr, a record per line.
stderr_log = logging.getLogger("duragent.mcp.stderr")

State = Literal["stopped", "starting", "running", "failed"]
#: Pause before the first restart, and the longest pause between attempts (seconds).
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 60.0
#: A connection up this long resets the pause to BACKOFF_FIRST.
STABLE_AFTER = 60.0
#: How long a closing server gets to stop on its own before its task is cancelled.
CLOSE_GRACE = 10.0
#: How long the stderr of a server that ended may take to reach its end (a child of the server
#: can hold it open).
STDERR_DRAIN = 1.0
#: How long the processes a stdio server left behind get to end on SIGTERM before SIGKILL.
GROUP_GRACE = 2.0
#: The most of a stderr line an error quotes.
QUOTED_STDERR = 300
#: The largest input schema of a tool that is offered (as JSON): every request of every turn
#: carries the schemas of all the agent's tools.
MAX_SCHEMA_BYTES = 64 * 1024


class McpUnavailable(DuragentError):
    """The server is not running (it failed to start, or it died and is not back yet)."""


class McpCallFailed(DuragentError):
    """A tool call got no result: it timed out, or the server answered with a protocol error."""


@dataclass(frozen=True)
class ServerStatus:
    """What `duragent mcp list` shows of one server."""

    name: str
    scope: str
    transport: str
    target: str
    state: State
    #: The tools as the model sees them (`<server>__<tool>`).
    tools: tuple[str, ...]
    error: str | None
    restarts: int

    def to_json(self) -> dict[str, Any]:
        """The status as JSON (the admin API, `mcp list --json`)."""
        return asdict(self) | {"tools": list(self.tools)}


class McpConnection:
    """One configured server and its client. `scope` is "workspace" or `agent:<name>`."""

    def __init__(
        self, spec: McpServerSpec, *, scope: str, cwd: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.spec = spec
        self.scope = scope
        self.cwd = cwd
        self._env = os.environ if env is None else env
        #: The values of the variables passed to the server (`env`), its credentials as a rule:
        #: a server that fails may print them, and its stderr is logged and quoted in errors
        #: (which reach a tool result, so the session's log and git).
        self._passed = SecretGuard({name: self._env[name] for name in spec.env if name in self._env})
        self._state: State = "stopped"
        self._progress = asyncio.Event()
        self._tools: tuple[mcp_types.Tool, ...] = ()
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._lost = asyncio.Event()
        self._tools_changed = asyncio.Event()
        self._error: str | None = None
        self._next_attempt = 0.0
        #: The last line the server wrote to stderr, and the HTTP error status it refused a
        #: request with while starting, this attempt.
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=1)
        self._http_refusal: str | None = None
        self.restarts = 0

    # --- what callers use ------------------------------------------------------------------

    @property
    def state(self) -> State:
        """stopped (never started or closed), starting, running, or failed (a retry is due)."""
        return self._state

    def status(self) -> ServerStatus:
        """The server's state, its tools and its last error."""
        return ServerStatus(
            name=self.spec.name,
            scope=self.scope,
            transport=self.spec.transport,
            target=self.spec.target,
            state=self._state,
            tools=tuple(name for name in tool_names([(self.spec.name, t.name) for t in self._tools]) if name),
            error=self._error,
            restarts=self.restarts,
        )

    @property
    def listed(self) -> tuple[mcp_types.Tool, ...]:
        """The tools the server listed last (none before it first started); starts nothing."""
        return self._tools

    async def tools(self) -> tuple[mcp_types.Tool, ...]:
        """The server's tools, starting it on first use (waits up to `start_timeout` then).

        A server that is down and being retried answers at once with the tools it had (none if
        it never started), so the model's tool list stays stable; a call then waits for the
        restart.
        """
        self.start()
        if not self._tools and self.restarts == 0:
            # The first start; a server being retried is not waited for (no tools this turn).
            await self._wait_for_attempt(time.monotonic() + self.spec.start_timeout.total_seconds())
        return self._tools

    async def call(self, tool: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """Call `tool`; McpUnavailable when the server is down, McpCallFailed when no result came."""
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        client = await self._running_client()
        timeout = self.spec.call_timeout.total_seconds()
        try:
            return await client.call_tool(tool, arguments, read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise McpCallFailed(f"no answer within {timeout:g}s") from None
            if exc.code == CONNECTION_CLOSED:
                self._lost.set()
                raise McpCallFailed("the server stopped during the call (it is being restarted)") from None
            raise McpCallFailed(f"the server refused the call: {exc.message}") from None
        except (OSError, TimeoutError) as exc:
            self._lost.set()
            raise McpCallFailed(f"the server could not be reached: {_describe(exc)}") from None
        except Exception as exc:
            # A result the SDK refused (not matching the tool's output schema, say): the
            # connection itself is fine, so it is not restarted.
            raise McpCallFailed(f"the call failed: {_describe(exc)}") from None

    def start(self) -> None:
        """Start the server's task if it is not running (idempotent)."""
        if self._task is None or self._task.done():
            self._stopping.clear()
            self._set_state("starting")
            self._task = asyncio.create_task(self._run(), name=f"mcp server {self.scope}/{self.spec.name}")

    async def close(self) -> None:
        """Stop the server (a stdio server's process ends) and wait for it."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), CLOSE_GRACE)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._client = None
        self._set_state("stopped")

    # --- the server's task -----------------------------------------------------------------

    async def _run(self) -> None:
        pause = BACKOFF_FIRST
        while not self._stopping.is_set():
            self._set_state("starting")
            began = time.monotonic()
            self._stderr_tail.clear()
            self._http_refusal = None
            try:
                await self._connected()
            except Exception as exc:
                self._error = self._explained(_describe(exc))
                log.warning("MCP server %s/%s: %s", self.scope, self.spec.name, self._error)
            finally:
                self._client = None
            if self._stopping.is_set():
                break
            if time.monotonic() - began > STABLE_AFTER:
                pause = BACKOFF_FIRST
            self._next_attempt = time.monotonic() + pause
            self._set_state("failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            pause = min(pause * 2, BACKOFF_MAX)
            self.restarts += 1
        self._set_state("stopped")

    async def _connected(self) -> None:
        """Connect, list the tools, then serve until the connection is lost or closing."""
        import anyio
        from mcp import Client, Implementation

        self._lost.clear()
        self._tools_changed.clear()
        client = Client(
            self._transport(),
            message_handler=self._on_message,
            client_info=Implementation(name="duragent", version=__version__),
        )
        start_timeout = self.spec.start_timeout.total_seconds()
        # The start is bounded by a scope around the client's whole life (the SDK's task groups
        # must close inside the scopes they were opened in); the bound is lifted once it runs.
        with anyio.CancelScope(deadline=anyio.current_time() + start_timeout) as scope:
            # Closing while the server is still starting (a server that never answers) ends the wait.
            abandon = asyncio.create_task(self._abandon_start_on_close(scope))
            try:
                async with client:
                    await self._load_tools(client)
                    scope.deadline = math.inf
                    self._client = client
                    self._error = None
                    self._set_state("running")
                    listener = asyncio.create_task(self._listen(client), name=f"mcp listen {self.spec.name}")
                    try:
                        await self._serve(client)
                    finally:
                        listener.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await listener
            finally:
                abandon.cancel()
        if self._stopping.is_set():
            return
        if scope.cancelled_caught:
            raise McpUnavailable(f"did not start within {start_timeout:g}s")
        raise McpUnavailable("the server stopped" if self.spec.command else "the connection was lost")

    def _explained(self, error: str) -> str:
        """`error` with what the server said of it: the HTTP status it refused with, or the last
        line it wrote to stderr."""
        if self._http_refusal is not None:
            return f"{error} (the server answered {self._http_refusal})"
        if self._stderr_tail:
            return f"{error}; its stderr said: {self._stderr_tail[-1][:QUOTED_STDERR]}"
        return error

    def _on_stderr(self, line: str) -> None:
        line = self._passed.redact(line.strip())
        if line:
            self._stderr_tail.append(line)
            stderr_log.info("MCP server %s/%s: %s", self.scope, self.spec.name, line)

    async def _on_http_response(self, response: Any) -> None:
        # Only requests (POST): a GET for the server's event stream may be refused (405) by
        # servers that have none, and that is no reason for anything to fail.
        if self._state == "starting" and response.request.method == "POST" and response.status_code >= 400:
            self._http_refusal = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()

    async def _abandon_start_on_close(self, scope: Any) -> None:
        await self._stopping.wait()
        if self._state == "starting":
            scope.cancel()

    async def _serve(self, client: Client) -> None:
        """Wait for the end (lost or closing), reloading the tools whenever the server says they changed."""
        while not (self._lost.is_set() or self._stopping.is_set()):
            waits = [
                asyncio.ensure_future(e.wait()) for e in (self._lost, self._stopping, self._tools_changed)
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
            if self._tools_changed.is_set() and not (self._lost.is_set() or self._stopping.is_set()):
                self._tools_changed.clear()
                try:
                    await self._load_tools(client, refresh=True)
                except Exception as exc:
                    log.warning("MCP server %s: could not list its tools again: %s", self.spec.name, exc)
                    self._lost.set()

    async def _load_tools(self, client: Client, *, refresh: bool = False) -> None:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _page in range(100):
            page = await client.list_tools(cursor=cursor, cache_mode="refresh" if refresh else "use")
            tools += page.tools
            cursor = page.next_cursor
            if cursor is None:
                break
        self._tools = tuple(tool for tool in tools if self._offerable(tool))
        self._set_state(self._state)  # wake anyone waiting for the new list

    def _offerable(self, tool: mcp_types.Tool) -> bool:
        """Whether `tool` can be offered to the model; if not, a warning says why."""
        size = len(json.dumps(tool.input_schema, ensure_ascii=False).encode())
        if size <= MAX_SCHEMA_BYTES:
            return True
        log.warning(
            "MCP server %s/%s: tool %r is not offered: its input schema is %d KiB (at most %d KiB)",
            self.scope,
            self.spec.name,
            tool.name,
            size // 1024,
            MAX_SCHEMA_BYTES // 1024,
        )
        return False

    async def _listen(self, client: Client) -> None:
        """On 2026-era connections, tool list changes arrive on a `subscriptions/listen` stream."""
        capabilities = client.server_capabilities.tools
        if capabilities is None or not capabilities.list_changed:
            return
        from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost

        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    self._tools_changed.set()
        except ListenNotSupportedError:
            return  # a handshake-era server sends notifications/tools/list_changed instead
        except (SubscriptionLost, Exception) as exc:
            log.debug("MCP server %s: listening for changes ended: %s", self.spec.name, exc)

    async def _on_message(self, message: Any) -> None:
        import mcp_types

        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._tools_changed.set()
        elif isinstance(message, Exception):
            log.debug("MCP server %s: transport error: %s", self.spec.name, message)

    def _transport(self) -> Any:
        """The SDK transport for the spec, wrapped so the end of the connection is noticed."""
        if self.spec.url is not None:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = httpx2.AsyncClient(
                headers=self.spec.headers,
                timeout=httpx2.Timeout(30.0, read=300.0),
                event_hooks={"response": [self._on_http_response]},
            )
            return _closing_http(streamable_http_client(self.spec.url, http_client=http), http, self._lost)
        from mcp import StdioServerParameters
        from mcp.client.stdio import get_default_environment

        assert self.spec.command is not None
        env = {name: self._env[name] for name in self.spec.env if name in self._env}
        if self.scope != "workspace":
            # An agent's server runs in its work folder, which the agent writes: `python -m
            # some_server` would import a `some_server.py` it put there before the installed one.
            env.setdefault("PYTHONSAFEPATH", "1")
        workdir = self._workdir()
        search_path = (get_default_environment() | env).get("PATH", os.defpath)
        # Killed with Duragent on Linux: a server that does not exit when its stdin ends would
        # otherwise outlive a `kill -9` of `duragent serve`.
        command, args = tied_to_this_process(
            _found(self.spec.command, search_path, workdir), [self.spec.command, *self.spec.args]
        )
        params = StdioServerParameters(command=command, args=args, env=env, cwd=workdir)
        return _stdio(params, self._lost, self._on_stderr)

    def _workdir(self) -> Path:
        folder = self.cwd / Path(self.spec.cwd).expanduser() if self.spec.cwd else self.cwd
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # --- waiting ---------------------------------------------------------------------------

    def _set_state(self, state: State) -> None:
        self._state = state
        self._progress.set()
        self._progress = asyncio.Event()

    async def _wait_for_attempt(self, deadline: float) -> None:
        """Wait until the current attempt to start ends (running or failed), or the deadline."""
        while self._state == "starting" and (remaining := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)

    async def _running_client(self) -> Client:
        """The client once the server runs; waits for a restart due within `start_timeout`."""
        self.start()
        deadline = time.monotonic() + self.spec.start_timeout.total_seconds()
        while (remaining := deadline - time.monotonic()) > 0:
            if self._state == "running" and self._client is not None and not self._lost.is_set():
                return self._client
            if self._state == "failed" and self._next_attempt > deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        reason = f": {self._error}" if self._error else ""
        raise McpUnavailable(f"MCP server {self.spec.name!r} is not running{reason}")


def _found(command: str, search_path: str, workdir: Path) -> str:
    """The path of `command`: looked up in `search_path` (a name) or in `workdir` (a path), as the
    server's own start would; FileNotFoundError naming it when there is none."""
    if os.sep not in command:
        return executable(command, search_path, workdir)
    found = str(workdir / command)
    if not os.path.exists(found):
        raise FileNotFoundError(errno.ENOENT, "no such executable file", command)
    return found


@contextlib.asynccontextmanager
async def _watched(transport: Any, lost: asyncio.Event) -> AsyncIterator[Any]:
    """`transport` whose read stream sets `lost` when it ends (the server's process exited)."""
    async with transport as (read_stream, write_stream):
        yield _WatchedReadStream(read_stream, lost), write_stream


@contextlib.asynccontextmanager
async def _stdio(params: Any, lost: asyncio.Event, on_stderr: Callable[[str], None]) -> AsyncIterator[Any]:
    """The stdio transport, the server's stderr read a line at a time into `on_stderr` (rather
    than mixed into Duragent's own stderr, where no one can tell which server wrote it)."""
    from mcp.client.stdio import stdio_client

    read_fd, write_fd = os.pipe()
    errlog = os.fdopen(write_fd, "w")
    stderr = os.fdopen(read_fd, "rb", buffering=0)
    reader: asyncio.Task[None] | None = None
    group: int | None = None
    try:
        async with _watched(stdio_client(params, errlog=errlog), lost) as streams:
            group = _child_writing_to(read_fd)
            errlog.close()  # the server has its copy: the pipe ends when the server does
            reader = asyncio.create_task(_read_lines(stderr, on_stderr), name="mcp stderr")
            yield streams
    finally:
        try:
            if group is not None:
                # The SDK ends the server's process group only when the server does not exit on
                # its own: a server that exits cleanly leaves its children (a helper it started)
                # running, with no one left to stop them.
                await _end_process_group(group)
        finally:
            # (also when that wait is cancelled: the pipe and its reader never outlive the server)
            errlog.close()
            if reader is not None:
                # What a server wrote before it exited says why: read it to the end before the
                # attempt's error is written.
                try:
                    await asyncio.wait({reader}, timeout=STDERR_DRAIN)
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        await reader
            stderr.close()


def _child_writing_to(pipe_fd: int) -> int | None:
    """The pid of this process's child whose stderr is the pipe `pipe_fd` reads (the stdio server
    just started, leader of its own process group), if the system says (Linux's /proc)."""
    import psutil

    pipe = f"pipe:[{os.fstat(pipe_fd).st_ino}]"
    for child in psutil.Process().children():
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{child.pid}/fd/2") == pipe and os.getpgid(child.pid) == child.pid:
                return child.pid
    return None


async def _end_process_group(group: int) -> None:
    """SIGTERM what is left of process group `group`, then SIGKILL it if it is still there after
    `GROUP_GRACE` seconds."""
    import signal

    try:
        os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + GROUP_GRACE
        while time.monotonic() < deadline:
            os.killpg(group, 0)  # ProcessLookupError once every member has ended
            await asyncio.sleep(0.05)
    except (ProcessLookupError, PermissionError):
        return
    finally:
        # Also when the wait is cancelled (a server closing past its grace): never left running.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


async def _read_lines(pipe: IO[bytes], on_line: Callable[[str], None]) -> None:
    """Each line read from `pipe` to `on_line`, until it ends."""
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), pipe
    )
    try:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # a line over the reader's limit, dropped
                continue
            if not line:
                return
            on_line(line.decode(errors="replace").rstrip())
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def _closing_http(transport: Any, http: Any, lost: asyncio.Event) -> AsyncIterator[Any]:
    """The HTTP transport, its httpx client closed with it."""
    async with http, _watched(transport, lost) as streams:
        yield streams


class _WatchedReadStream:
    """A read stream that sets an event when it ends; everything else is the wrapped stream's."""

    def __init__(self, inner: Any, ended: asyncio.Event) -> None:
        self._inner = inner
        self._ended = ended

    async def receive(self) -> Any:
        import anyio

        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._ended.set()
            raise

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        import anyio

        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedReadStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        self._ended.set()
        result: bool | None = await self._inner.__aexit__(*exc)
        return result

    def __getattr__(self, name: str) -> Any:
        # `last_context` and whatever else the SDK reads from its own streams.
        return getattr(self._inner, name)


def _describe(exc: BaseException) -> str:
    """One line for an error, the first real one inside an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"command not found: {exc.filename}"
    if isinstance(exc, ValidationError):
        return _refused_message(exc)
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _refused_message(exc: ValidationError) -> str:
    """A message of the server the SDK refused (a tool list with a broken schema, say), in one
    line: pydantic's own text spans several, with a link to its docs."""
    errors = exc.errors()
    first = errors[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    where = f"{where.lstrip('.')}: " if where else ""
    return f"the server sent a {exc.title} the client refuses: {where}{first['msg']}{more}"
