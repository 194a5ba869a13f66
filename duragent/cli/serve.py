"""`duragent serve`: run the HTTP server; `serve status` and `serve stop` talk to a running one.

The running server writes `<data_dir>/run/serve.json` (`duragent.client.runfile`) once it is
ready; `status`, `stop` and the terminal clients find it there. SIGTERM / SIGINT stop it
gracefully: running turns get a grace period to reach a safe point, sessions are snapshotted,
git commits what is pending.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from duragent.cli.context import CliState, print_json

if TYPE_CHECKING:
    from duragent.config import DuragentConfig
    from duragent.server.state import ServerState


def register(app: typer.Typer) -> None:
    """Add the `serve` command group."""
    serve_app = typer.Typer(
        invoke_without_command=True,
        no_args_is_help=False,
        help="Run the HTTP REST + SSE server (or check on / stop a running one).",
    )
    serve_app.callback()(serve)
    serve_app.command("status")(status)
    serve_app.command("stop")(stop)
    app.add_typer(serve_app, name="serve")


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default: server.host).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", "-p", min=0, max=65535, help="Port (default: server.port, else 8080; 0 = any free one)."
        ),
    ] = None,
    agents_dir: Annotated[
        Path | None, typer.Option("--agents-dir", help="Folder of agent definitions (agents.static.path).")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow a non-loopback bind without api and admin tokens.")
    ] = False,
    grace: Annotated[
        float, typer.Option("--grace", min=0, help="Seconds running turns get to reach a safe point on stop.")
    ] = 10.0,
    auto: Annotated[bool, typer.Option("--auto", hidden=True)] = False,
    ready_fd: Annotated[int | None, typer.Option("--ready-fd", hidden=True)] = None,
) -> None:
    """Run the server until SIGTERM / SIGINT / `duragent serve stop`."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from duragent.config import DEFAULT_PORT

    state: CliState = ctx.ensure_object(CliState)
    config = state.config()
    if agents_dir is not None:
        static = config.agents.static.model_copy(update={"path": agents_dir.expanduser().absolute()})
        config = config.model_copy(update={"agents": config.agents.model_copy(update={"static": static})})
    if port is not None:
        setting = "pass another --port (0 picks a free one)"
    elif config.http_port is not None:
        setting = f"set another server.port in {config.source or 'duragent.yaml'}"
    else:
        setting = "pass --port 0 (any free port) or set server.port in duragent.yaml"
    chosen = port if port is not None else config.http_port if config.http_port is not None else DEFAULT_PORT
    asyncio.run(
        run_server(
            config,
            host or config.server.host,
            chosen,
            insecure=insecure,
            grace=grace,
            auto_started=auto,
            ready_fd=ready_fd,
            port_setting=setting,
        )
    )


async def run_server(
    config: DuragentConfig,
    host: str,
    port: int,
    *,
    insecure: bool,
    grace: float,
    auto_started: bool = False,
    ready_fd: int | None = None,
    port_setting: str = "set another server.port in duragent.yaml",
) -> None:
    """Serve until a signal or an admin shutdown; then stop gracefully and remove the run file.

    The run file is written once the port is bound and every resource is open: its appearance
    (and a line on `ready_fd`, for the client that started this server) means ready.
    """
    import asyncio
    import signal

    from aiohttp import web

    from duragent.client.runfile import remove_run_info
    from duragent.server.app import create_app
    from duragent.server.ports import PortTaken, is_address_in_use, port_holder
    from duragent.server.state import STATE

    app = create_app(config, insecure=insecure, host=host, shutdown_grace=grace)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=grace + 5, access_log=None)
    await runner.setup()
    _freeze_startup_heap()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            if not is_address_in_use(exc):
                raise
            raise PortTaken(host, port, port_holder(port), port_setting) from None
        bound_port = _bound_port(runner, port)
        url = f"http://{_url_host(host)}:{bound_port}"
        _write_run_file(config, app[STATE], host, bound_port, url, auto_started=auto_started)
        print(f"duragent serve: listening on {url} (data: {config.data_path})", file=sys.stderr, flush=True)
        _signal_ready(ready_fd, url)
        stopping = app[STATE].shutdown
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
        print("duragent serve: stopping", file=sys.stderr, flush=True)
    finally:
        await runner.cleanup()
        remove_run_info(config.data_path, os.getpid())


def _signal_ready(ready_fd: int | None, url: str) -> None:
    """Tell the client that started this server that it is ready (a line on the pipe it gave)."""
    if ready_fd is None:
        return
    try:
        os.write(ready_fd, f"{url}\n".encode())
        os.close(ready_fd)
    except OSError:
        pass  # the client gave up waiting; it finds the server through the run file next time


def _freeze_startup_heap() -> None:
    """Exempt everything built at start-up (modules, config, agents) from garbage collection.

    A full collection scans every tracked object; with the start-up heap frozen it scans only what
    the server made since, so its pauses (which stall every stream at once) stay a few ms.
    """
    import gc

    gc.collect()
    gc.freeze()


def _bound_port(runner: Any, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _write_run_file(
    config: DuragentConfig, state: ServerState, host: str, port: int, url: str, *, auto_started: bool
) -> None:
    from datetime import UTC, datetime

    from duragent.client.runfile import EnvFingerprint, config_digest, write_run_info
    from duragent.runtime.providers import provider_env_names

    names = provider_env_names((agent.spec.model for agent in state.agents.loaded()), config.referenced_env)
    write_run_info(
        config.data_path,
        {
            "pid": os.getpid(),
            "host": host,
            "port": port,
            "url": url,
            "started_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "workspace_hash": config.workspace_hash,
            "auto_started": auto_started,
            "env": EnvFingerprint.of(names, os.environ).as_json(),
            "config_digest": config_digest(config.source),
        },
    )


def read_run_file(config: DuragentConfig) -> dict[str, Any] | None:
    """The running server's record, or None when no server of this data directory is running."""
    from duragent.client.runfile import read_run_info, run_file

    if read_run_info(config.data_path) is None:
        return None
    try:
        record: Any = json.loads(run_file(config.data_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def request_server(url: str, token: str | None, method: str = "GET", timeout: float = 5.0) -> tuple[int, str]:
    """Status and body of one request to a running server (OSError when it cannot be reached)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Is a server running for this data directory? Where, since when, and is it ready?"""
    state: CliState = ctx.ensure_object(CliState)
    config = state.config()
    record = read_run_file(config)
    if record is None:
        if as_json:
            print_json({"running": False})
        else:
            print(f"not running (no live server for {config.data_path})")
        raise typer.Exit(1)
    try:
        code, body = request_server(f"{record['url']}/readyz", None)
        ready: Any = json.loads(body) if body else {}
        ready_status = "ready" if code == 200 else "not ready"
    except (OSError, ValueError) as exc:
        ready, ready_status = {"error": str(exc)}, "not answering"
    if as_json:
        print_json({"running": True, **record, "ready": ready_status == "ready", "readyz": ready})
        return
    started_by = "started by a terminal client" if record.get("auto_started") else "started by hand"
    print(
        f"running: pid {record['pid']} at {record['url']} since {record['started_at']} "
        f"({started_by}; {ready_status})"
    )
    report = ready if isinstance(ready, dict) else {}
    for problem in report.get("problems", []):
        print(f"  {problem}")
    for agent, problems in dict(report.get("agents") or {}).items():
        print(f"  agent {agent} is broken (the others still answer):")
        for problem in problems:
            print(f"    {problem}")


def stop(
    ctx: typer.Context,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the server to exit.")
    ] = 30.0,
) -> None:
    """Ask the running server to shut down (admin API) and wait until its process exits."""
    state: CliState = ctx.ensure_object(CliState)
    config = state.config()
    record = read_run_file(config)
    if record is None:
        print(f"not running (no live server for {config.data_path})")
        return
    from duragent.client.http import admin_token

    code, body = request_server(f"{record['url']}/api/admin/v1/shutdown", admin_token(config), method="POST")
    if code >= 400 and code != 409:
        from duragent.errors import DuragentError

        raise DuragentError(f"the server refused to shut down (HTTP {code}): {body.strip()}")
    pid = int(record["pid"])
    deadline = time.monotonic() + timeout
    from duragent.client.runfile import pid_alive

    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        from duragent.errors import DuragentError

        raise DuragentError(f"pid {pid} is still running after {timeout:g}s")
    print(f"stopped (pid {pid})")
