"""Dashboard: each agent's memory files (MEMORY.md, daily files): view, edit, save as the person."""

from __future__ import annotations

import asyncio

from aiohttp import web

from duragent.memory.files import memory_file_names, read_memory_file, save_memory_file
from duragent.server.state import STATE
from duragent.web.login import UI_PREFIX, form_endpoint
from duragent.web.pages import render, see_other


async def memory_index(request: web.Request) -> web.Response:
    """GET /ui/memory: every agent and its memory files."""
    state = request.app[STATE]
    agents = [s.name for s in state.agents.summaries()]
    files = {name: await asyncio.to_thread(memory_file_names, state.workspace, name) for name in agents}
    return render(request, "memory.html", {"agents": agents, "files": files})


async def memory_file(request: web.Request) -> web.Response:
    """GET /ui/memory/{agent}/{name}: the file in an editor (read-only without JavaScript too)."""
    state = request.app[STATE]
    agent, name = request.match_info["agent"], request.match_info["name"]
    text = await asyncio.to_thread(read_memory_file, state.workspace, agent, name)
    saved = request.query.get("saved")
    return render(
        request,
        "memory_file.html",
        {"agent": agent, "name": name, "text": text, "saved": saved, "by": request.query.get("by")},
    )


@form_endpoint
async def save_file(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/memory/{agent}/{name} (text): save and commit as the person, then show the file again."""
    from urllib.parse import urlencode

    state = request.app[STATE]
    agent, name = request.match_info["agent"], request.match_info["name"]
    saved = await asyncio.to_thread(save_memory_file, state.workspace, agent, name, form.get("text", ""))
    query = urlencode({"saved": saved.sha or "unchanged", "by": saved.committed_as or ""})
    raise see_other(f"{UI_PREFIX}/memory/{agent}/{name}?{query}")


def add_routes(app: web.Application) -> None:
    """Register the memory pages."""
    app.router.add_get(f"{UI_PREFIX}/memory", memory_index)
    app.router.add_get(f"{UI_PREFIX}/memory/{{agent}}/{{name}}", memory_file)
    app.router.add_post(f"{UI_PREFIX}/memory/{{agent}}/{{name}}", save_file)
