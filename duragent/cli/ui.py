"""`duragent ui`: open the dashboard of the workspace's server in a browser, logged in."""

from __future__ import annotations

from typing import Annotated

import typer

from duragent.cli.context import CliState, run_async


def register(root: typer.Typer) -> None:
    """Add the `ui` command."""
    root.command("ui")(ui)


def ui(
    ctx: typer.Context,
    server: Annotated[
        str | None, typer.Option("--server", help="Server URL (default: this workspace's).")
    ] = None,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Only print the login link (e.g. to open it elsewhere).")
    ] = False,
) -> None:
    """Open the web dashboard (starting the workspace's server if needed), already logged in."""
    import webbrowser

    state: CliState = ctx.obj
    url = run_async(_login_link(state, server))
    print(f"Dashboard: {url}\n(a one-time login link, valid for 2 minutes)")
    if not no_browser and not webbrowser.open(url):
        print("No browser could be opened here: open the link above yourself.")


async def _login_link(state: CliState, server: str | None) -> str:
    from duragent.cli.chat import announce
    from duragent.client.http import ApiClient, admin_token, api_token
    from duragent.client.launcher import connect, workspace_of
    from duragent.server.auth import ADMIN_TOKEN_HEADER
    from duragent.web.app import TICKET_PATH

    config = state.config()
    token = api_token(config)
    connection = connect(workspace_of(config), server_url=server)
    announce(connection)
    async with ApiClient(connection.url, token=token) as api:
        admin = admin_token(config)
        if admin:  # the link's login may then use the admin controls (Kill a process)
            api.http.headers[ADMIN_TOKEN_HEADER] = admin
        _, ticket = await api.request("POST", TICKET_PATH, body={})
    return f"{connection.url}{ticket['path']}"
