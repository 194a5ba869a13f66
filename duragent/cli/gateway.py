"""`duragent gateway list`: the running server's gateway plugins, from its admin API."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from duragent.cli.context import CliState, print_json, print_table


def register(app: typer.Typer) -> None:
    """Add the `gateway` command group."""
    gateway_app = typer.Typer(no_args_is_help=True, help="Gateway plugins of the running server.")
    gateway_app.command("list")(list_gateways)
    app.add_typer(gateway_app, name="gateway")


def list_gateways(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each gateway plugin's state, restarts and last error (asks the running server)."""
    from duragent.cli.serve import read_run_file
    from duragent.client.http import admin_token
    from duragent.errors import DuragentError

    state: CliState = ctx.ensure_object(CliState)
    config = state.config()
    record = read_run_file(config)
    if record is None:
        raise DuragentError(f"no server is running for {config.data_path} (start one with `duragent serve`)")
    gateways = _fetch(f"{record['url']}/api/admin/v1/gateways", admin_token(config))
    if as_json:
        print_json(gateways)
        return
    if not gateways:
        print("no gateway plugins configured (gateways.external in duragent.yaml)")
        return
    rows = [
        [g["name"], _state(g), str(g["restarts"]), str(g.get("pid") or "-"), g.get("last_error") or ""]
        for g in gateways
    ]
    print_table(["NAME", "STATE", "RESTARTS", "PID", "LAST ERROR"], rows)


def _state(gateway: dict[str, Any]) -> str:
    """`ready`, or `ready, reconnecting` while its platform is out of reach (its last health check)."""
    if gateway["state"] == "ready" and gateway.get("connected") is False:
        return "ready, reconnecting"
    return str(gateway["state"])


def _fetch(url: str, token: str | None) -> list[dict[str, Any]]:
    from duragent.cli.serve import request_server
    from duragent.errors import DuragentError

    try:
        status, text = request_server(url, token)
        if status != 200:
            raise DuragentError(f"the server answered HTTP {status}: {text.strip()}")
        body: dict[str, Any] = json.loads(text)
    except (OSError, ValueError) as exc:
        raise DuragentError(f"cannot reach the server at {url}: {exc}") from exc
    gateways: list[dict[str, Any]] = body.get("gateways", [])
    return gateways
