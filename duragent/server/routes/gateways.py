"""GET /api/admin/v1/gateways: each gateway plugin's state, restarts and last error."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from duragent.server.bodies import Reply, json_reply
from duragent.server.openapi import documented
from duragent.server.state import STATE


class GatewayOut(Reply):
    """One gateway plugin as `duragent gateway list` shows it."""

    name: str
    state: str
    restarts: int
    last_error: str | None = None
    pid: int | None = None
    capabilities: list[str] = Field(default_factory=list)
    connected: bool | None = Field(
        None, description="Whether it reached its platform at the last health check (every 30 s)."
    )


class GatewaysOut(Reply):
    """GET /api/admin/v1/gateways."""

    gateways: list[GatewayOut]


@documented(
    "Gateway plugins: state (starting, ready, backoff, stopped, crash_loop), restarts, last error.",
    responses={200: GatewaysOut},
)
async def list_gateways(request: web.Request) -> web.Response:
    """Every configured gateway plugin and how it is doing."""
    state = request.app[STATE]
    service = state.gateways
    statuses = service.statuses() if service is not None else []
    # A plugin's error may echo its bot token (a Bot API URL in a non-JSON reply): never show it.
    redact = state.workspace.guard.redact_value
    return json_reply(
        GatewaysOut(gateways=[GatewayOut.model_validate(redact(s.to_json())) for s in statuses])
    )
