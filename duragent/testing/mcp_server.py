"""A small MCP server for tests: tools that answer, fail, take their time, crash, and change.

Written with the official SDK (`MCPServer`, the SDK 2 name of FastMCP), so a client talks to it
over the real wire format. Run it as a subprocess::

    python -m duragent.testing.mcp_server                 # stdio
    python -m duragent.testing.mcp_server --http 0        # Streamable HTTP on a free port

In tests, `server_entry()` is the `mcp_servers` entry that runs it over stdio, and
`async with http_server() as url:` runs it over HTTP for the duration of a block.

With `--http`, the first line on stdout is `listening on http://127.0.0.1:<port>/mcp`. Every
started process appends its pid to the file named by `MCP_TEST_PIDS` (one per line), so a test
can tell a restarted server from the first one. `--require-header NAME=VALUE` makes the HTTP
server refuse requests without that header (to test configured headers).

`--handshake-only` serves only the initialize-handshake era (as servers on SDKs before 2026
do), so list changes reach clients as notifications rather than on a listen stream.
`--extra-tool NAME` (repeatable) adds a tool of that exact name (dots and all) answering
`ran <NAME>`, to test tools whose names clash once made safe for a model.
`--schema-tool NAME=JSON` (repeatable) adds a tool of that name whose input schema is the JSON
given, to test huge or odd schemas (the SDK refuses to send one that is not an object schema:
`--raw-tool-list` sends those).
`--raw-tool-list JSON` answers `tools/list` with that list of tools as it is, over stdio,
from a hand-written loop instead of the SDK (which refuses to send a list that breaks the
protocol): a server in another language with a broken tool.
`--fail-start MESSAGE` writes MESSAGE to stderr and exits with status 1 before serving: a
server that cannot start (a missing setting, say).

Tools: `echo(text)`, `add(a, b)` (structured result), `fail(message)` (a tool error),
`sleep(seconds)`, `crash()` (the process exits), `image()` (a PNG), `env(name)` (a variable
of the server's environment or "<unset>"), `cwd()`, and `grow()`, which adds a tool `late` and
tells clients the tool list changed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image
from pydantic import BaseModel

#: A 1x1 red PNG, what `image()` returns.
RED_PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


class Sum(BaseModel):
    """What `add` returns (as structured content and as text)."""

    sum: int


def create_server(extra_tools: Sequence[str] = (), schema_tools: Sequence[str] = ()) -> MCPServer:
    """The test server with all its tools, one answering `ran <name>` for each extra name, and one
    with the given input schema for each `NAME=JSON` of `schema_tools`."""
    server = MCPServer("duragent-test", version="1.0")
    for name in extra_tools:
        server.add_tool(_ran(name), name=name, description=f"Answer 'ran {name}'.")
    for entry in schema_tools:
        name, _, schema = entry.partition("=")
        server.add_tool(_ran(name), name=name, description=f"Answer 'ran {name}'.")
        server._tool_manager.get_tool(name).parameters = json.loads(schema)  # type: ignore[union-attr]

    @server.tool(description="Repeat the text back.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> Sum:
        return Sum(sum=a + b)

    @server.tool(description="Fail with the given message.")
    def fail(message: str) -> str:
        raise ToolError(message)

    @server.tool(description="Wait this many seconds, then answer.")
    async def sleep(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"slept {seconds}"

    @server.tool(description="Exit the server process at once.")
    def crash() -> str:
        os._exit(3)

    @server.tool(description="A one-pixel PNG image.")
    def image() -> Image:
        return Image(data=RED_PIXEL_PNG, format="png")

    @server.tool(description="The value of an environment variable of the server.")
    def env(name: str) -> str:
        return os.environ.get(name, "<unset>")

    @server.tool(description="The server's working directory.")
    def cwd() -> str:
        return os.getcwd()

    @server.tool(description="Add the tool `late` and announce the changed tool list.")
    async def grow(ctx: Context) -> str:
        if "late" not in {tool.name for tool in await server.list_tools()}:
            server.add_tool(_late, name="late", description="A tool added while the server runs.")
        await ctx.notify_tools_changed()
        await _notify_handshake_era(ctx)
        return "grown"

    return server


def server_entry(
    name: str = "test",
    *,
    handshake_only: bool = False,
    extra_tools: Sequence[str] = (),
    fail_start: str | None = None,
    schema_tools: Mapping[str, Any] | None = None,
    raw_tool_list: list[Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An `mcp_servers` entry (agent.yaml or duragent.yaml) running this server over stdio."""
    args = ["-m", __name__, *(["--handshake-only"] if handshake_only else [])]
    args += [f"--extra-tool={tool}" for tool in extra_tools]
    args += [f"--fail-start={fail_start}"] if fail_start is not None else []
    args += [f"--raw-tool-list={json.dumps(raw_tool_list)}"] if raw_tool_list is not None else []
    args += [f"--schema-tool={tool}={json.dumps(schema)}" for tool, schema in (schema_tools or {}).items()]
    return {"name": name, "command": sys.executable, "args": args, **extra}


@contextlib.asynccontextmanager
async def http_server(
    require_header: str | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """Run this server over Streamable HTTP on a free port; yields its URL, stops it after."""
    args = ["-m", __name__, "--http", "0"]
    if require_header:
        args += ["--require-header", require_header]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the MCP test server did not start: {line!r}")
        yield line.removeprefix("listening on ").strip()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                # uvicorn waits for open streams to end; a client still connected must not hang us.
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
        await process.wait()


def _late() -> str:
    return "late tool ran"


def _ran(name: str) -> Callable[[], str]:
    def ran() -> str:
        return f"ran {name}"

    return ran


async def _notify_handshake_era(ctx: Context) -> None:
    """Clients on the initialize-handshake protocol hear of list changes by a notification."""
    session: Any = getattr(ctx.request_context, "session", None)
    send = getattr(session, "send_tool_list_changed", None)
    if send is not None:
        await send()


def _record_pid() -> None:
    path = os.environ.get("MCP_TEST_PIDS")
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(f"{os.getpid()}\n")


def main(argv: list[str] | None = None) -> None:
    """Serve over stdio, or over Streamable HTTP with `--http PORT` (0: a free port)."""
    parser = argparse.ArgumentParser(prog="python -m duragent.testing.mcp_server")
    parser.add_argument("--http", type=int, default=None, metavar="PORT")
    parser.add_argument("--require-header", default=None, metavar="NAME=VALUE")
    parser.add_argument(
        "--handshake-only", action="store_true", help="Refuse the 2026 era (server/discover)."
    )
    parser.add_argument("--extra-tool", action="append", default=[], metavar="NAME")
    parser.add_argument("--schema-tool", action="append", default=[], metavar="NAME=JSON")
    parser.add_argument("--raw-tool-list", default=None, metavar="JSON")
    parser.add_argument("--fail-start", default=None, metavar="MESSAGE", help="Exit 1 saying MESSAGE.")
    args = parser.parse_args(argv)
    _record_pid()
    if args.fail_start is not None:
        print(args.fail_start, file=sys.stderr, flush=True)
        sys.exit(1)
    if args.raw_tool_list is not None:
        _serve_raw_tool_list(json.loads(args.raw_tool_list))
        return
    server = create_server(args.extra_tool, args.schema_tool)
    if args.http is None:
        asyncio.run(_serve_handshake_only(server) if args.handshake_only else server.run_stdio_async())
        return
    asyncio.run(_serve_http(server, args.http, args.require_header))


def _serve_raw_tool_list(tools: list[Any]) -> None:
    """Answer initialize and tools/list (with `tools`) on stdio, and refuse anything else."""
    for line in sys.stdin:
        message = json.loads(line)
        if "id" not in message:
            continue  # a notification
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
        if message["method"] == "initialize":
            reply["result"] = {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "duragent-test-raw", "version": "1.0"},
            }
        elif message["method"] == "tools/list":
            reply["result"] = {"tools": tools}
        else:
            reply["error"] = {"code": -32601, "message": f"method not found: {message['method']}"}
        print(json.dumps(reply), flush=True)


async def _serve_handshake_only(server: MCPServer) -> None:
    """stdio in the initialize-handshake era only, as servers on SDKs before 2026 speak."""
    from mcp.server.runner import serve_loop
    from mcp.server.stdio import stdio_server

    lowlevel = server._lowlevel_server
    async with stdio_server() as (read_stream, write_stream), lowlevel.lifespan(lowlevel) as state:
        options = lowlevel.create_initialization_options()
        await serve_loop(lowlevel, read_stream, write_stream, lifespan_state=state, init_options=options)


async def _serve_http(server: MCPServer, port: int, required: str | None) -> None:
    import uvicorn
    from starlette.responses import PlainTextResponse

    app: Any = server.streamable_http_app()
    if required:
        name, _, value = required.partition("=")
        inner = app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
            if scope["type"] == "http" and headers.get(name.lower()) != value:
                await PlainTextResponse("missing header", status_code=401)(scope, receive, send)
                return
            await inner(scope, receive, send)

    # Bound before the line is printed: a client reading it can connect at once.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    config = uvicorn.Config(app, log_level="warning")
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    main()
