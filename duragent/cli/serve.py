"""`duragent serve`: run the HTTP server; `serve status` and `serve stop` talk to a running one.

The running server (`duragent.cli.serving`) writes `<data_dir>/run/serve.json`
(`duragent.client.runfile`) once it is ready; `status`, `stop` and the terminal clients find it
there. SIGTERM / SIGINT stop it gracefully: running turns get a grace period to reach a safe
point, sessions are snapshotted, git commits what is pending.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from duragent.cli.context import CliState, print_json
from duragent.cli.serving import DEFAULT_GRACE

if TYPE_CHECKING:
    from duragent.config import DuragentConfig


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
    ] = DEFAULT_GRACE,
    auto: Annotated[bool, typer.Option("--auto", hidden=True)] = False,
    ready_fd: Annotated[int | None, typer.Option("--ready-fd", hidden=True)] = None,
) -> None:
    """Run the server until SIGTERM / SIGINT / `duragent serve stop`."""
    if ctx.invoked_subcommand is not None:
        return
    from duragent.cli.serving import ServeOptions, serve_workspace

    options = ServeOptions(host, port, agents_dir, insecure, grace, auto, ready_fd)
    serve_workspace(ctx.ensure_object(CliState), options)


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
