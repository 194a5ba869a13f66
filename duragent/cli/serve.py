"""`duragent serve`: run the HTTP server; `serve status` and `serve stop` talk to a running one.

The running server (`duragent.cli.serving`) writes `<data_dir>/run/serve.json`
(`duragent.client.runfile`) once it is ready; `status`, `stop` and the terminal clients find it
there. SIGTERM / SIGINT stop it gracefully: running turns get a grace period to reach a safe
point, sessions are snapshotted, git commits what is pending.
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
    return read_run_record(config.data_path)


def read_run_record(data_path: Path) -> dict[str, Any] | None:
    """The record of the server running for `data_path`, or None when none runs."""
    from duragent.client.runfile import read_run_info, run_file

    if read_run_info(data_path) is None:
        return None
    try:
        record: Any = json.loads(run_file(data_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _served_workspace(state: CliState) -> tuple[Path, DuragentConfig | None]:
    """The data directory whose server `status` and `stop` look for, and the configuration.

    An edit that breaks duragent.yaml must not keep anyone from checking on or stopping the
    server started before it: when the data directory can still be read from the file (as
    `send`'s fast path reads it), the configuration's error is a warning and the configuration
    None.
    """
    from duragent.errors import ConfigError

    try:
        config = state.config()
    except ConfigError as exc:
        data_path = _data_path_despite(state)
        if data_path is None:
            raise
        print(f"warning: {exc}", file=sys.stderr)
        return data_path, None
    return config.data_path, config


def _data_path_despite(state: CliState) -> Path | None:
    """The data directory of a workspace whose duragent.yaml does not load, when it can be told."""
    if state.data_dir is not None:
        return state.data_dir.expanduser().resolve()
    config_path = state.workspace_config()
    if config_path is None:
        return None
    from duragent.cli.quick_send import data_path_of

    return data_path_of(config_path)


def _admin_token(data_path: Path, config: DuragentConfig | None) -> str | None:
    """The admin token: the configuration's way, else (it does not load) the environment or the file."""
    if config is not None:
        from duragent.client.http import admin_token

        return admin_token(config)
    from duragent.access_tokens import ADMIN_TOKEN_ENV, read_tokens

    stored = read_tokens(data_path)
    return os.environ.get(ADMIN_TOKEN_ENV) or (stored.admin if stored is not None else None)


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
    data_path, _ = _served_workspace(state)
    record = read_run_record(data_path)
    if record is None:
        if as_json:
            print_json({"running": False})
        else:
            print(f"not running (no live server for {data_path})")
        raise typer.Exit(1)
    try:
        code, body = request_server(f"{record['url']}/readyz", None)
        ready: Any = json.loads(body) if body else {}
        ready_status = "ready" if code == 200 else "not ready"
        if code == 200 and isinstance(ready, dict) and ready.get("status") == "degraded":
            ready_status = "ready, degraded"
    except (OSError, ValueError) as exc:
        ready, ready_status = {"error": str(exc)}, "not answering"
    if as_json:
        print_json({"running": True, **record, "ready": ready_status.startswith("ready"), "readyz": ready})
        return
    started_by = "started by a terminal client" if record.get("auto_started") else "started by hand"
    print(
        f"running: pid {record['pid']} at {record['url']} since {record['started_at']} "
        f"({started_by}; {ready_status})"
    )
    report = ready if isinstance(ready, dict) else {}
    for problem in report.get("problems", []):
        print(f"  {problem}")
    # (still serving, but something needs a person: commits failing, a stale git lock)
    for warning in report.get("warnings", []):
        print(f"  warning: {warning}")
    for agent, problems in dict(report.get("agents") or {}).items():
        print(f"  agent {agent} is broken (the others still answer):")
        for problem in problems:
            print(f"    {problem}")
    for agent, warnings in dict(report.get("agent_warnings") or {}).items():
        print(f"  agent {agent} answers, with warnings:")
        for warning in warnings:
            print(f"    {warning}")


def stop(
    ctx: typer.Context,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds to wait for the server to exit.")
    ] = 30.0,
) -> None:
    """Ask the running server to shut down (admin API) and wait until its process exits."""
    state: CliState = ctx.ensure_object(CliState)
    data_path, config = _served_workspace(state)
    record = read_run_record(data_path)
    if record is None:
        print(f"not running (no live server for {data_path})")
        return
    token = _admin_token(data_path, config)
    code, body = request_server(f"{record['url']}/api/admin/v1/shutdown", token, method="POST")
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
