"""Dashboard: agent definitions with their validation problems, and the gateway plugins.

What `GET /api/admin/v1/agents` and `/api/admin/v1/gateways` show: pages for a login made with the
admin token (`admin_page`).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from duragent.errors import InvalidName
from duragent.server.state import STATE
from duragent.web.pages import admin_page, render


@admin_page("The Agents page")
async def agents(request: web.Request) -> web.Response:
    """GET /ui/agents: every agent (valid or not), its problems and its files."""
    registry = request.app[STATE].agents
    rows = []
    for summary in registry.summaries():
        try:
            files = await asyncio.to_thread(registry.files, summary.name)
        except InvalidName:
            files = {}  # a folder no agent may be named after (`helper.old`): its problem says so
        rows.append({"summary": summary, "files": files})
    return render(request, "agents.html", {"rows": rows})


@admin_page("The Gateways page")
async def gateways(request: web.Request) -> web.Response:
    """GET /ui/gateways: each gateway plugin's state, restarts and last error."""
    service = request.app[STATE].gateways
    statuses = service.statuses() if service is not None else []
    return render(request, "gateways.html", {"gateways": statuses})
