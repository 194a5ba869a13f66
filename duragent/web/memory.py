"""Dashboard: each agent's memory files (MEMORY.md, daily files): view, edit, save as the person."""

from __future__ import annotations

import asyncio

from aiohttp import web

from duragent.agents.catalog import AgentNotFound
from duragent.errors import InvalidName
from duragent.ids import check_name
from duragent.memory.files import (
    MemoryChanged,
    memory_file_names,
    memory_folder,
    read_memory_file,
    save_memory_file,
    text_stamp,
)
from duragent.server.problems import KEEP_BODY
from duragent.server.state import STATE, ServerState
from duragent.web.login import UI_PREFIX, form_endpoint
from duragent.web.pages import render, see_other


async def memory_index(request: web.Request) -> web.Response:
    """GET /ui/memory: every agent and its memory files."""
    state = request.app[STATE]
    agents = [s.name for s in state.agents.summaries() if _may_have_memory(s.name)]
    files = {name: await asyncio.to_thread(memory_file_names, state.workspace, name) for name in agents}
    return render(request, "memory.html", {"agents": agents, "files": files})


def _may_have_memory(name: str) -> bool:
    """False for a folder no agent may be named after (`helper.old`, listed as an invalid agent)."""
    try:
        check_name(name, "agent name")
    except InvalidName:
        return False
    return True


def check_agent(state: ServerState, agent: str) -> None:
    """AgentNotFound (404, naming the agents there are) unless `agent` is defined or its memory
    folder is still there (its definition removed): a mistyped address opens no editor, and a save
    there makes no folder for an agent nobody has (blocking: call it in a thread)."""
    try:
        state.agents.source(agent)
    except AgentNotFound:
        if not memory_folder(state.workspace, agent).is_dir():
            raise


async def memory_file(request: web.Request) -> web.Response:
    """GET /ui/memory/{agent}/{name}: the file in an editor (read-only without JavaScript too)."""
    state = request.app[STATE]
    agent, name = request.match_info["agent"], request.match_info["name"]
    await asyncio.to_thread(check_agent, state, agent)
    text = await asyncio.to_thread(read_memory_file, state.workspace, agent, name)
    saved = request.query.get("saved")
    context = {"agent": agent, "name": name, "text": text, "saved": saved, "by": request.query.get("by")}
    return render(request, "memory_file.html", {**context, "opened": text_stamp(text), "current": None})


@form_endpoint
async def save_file(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/memory/{agent}/{name} (text, opened): save and commit as the person, then show the
    file again; 409 with both texts, saving nothing, when the file changed since its editor opened."""
    from urllib.parse import urlencode

    state = request.app[STATE]
    agent, name = request.match_info["agent"], request.match_info["name"]
    await asyncio.to_thread(check_agent, state, agent)
    text = form.get("text", "")
    opened = form.get("opened")  # absent: a post not made by the editor page (a script's)
    try:
        saved = await asyncio.to_thread(save_memory_file, state.workspace, agent, name, text, opened=opened)
    except MemoryChanged as changed:
        return _changed_meanwhile(request, agent, name, text, changed.current)
    query = urlencode({"saved": saved.sha or "unchanged", "by": saved.committed_as or ""})
    raise see_other(f"{UI_PREFIX}/memory/{agent}/{name}?{query}")


def _changed_meanwhile(request: web.Request, agent: str, name: str, text: str, current: str) -> web.Response:
    """The editor again with the person's text, the file's new text beside it, and a form that
    saves over that new text (the person has seen it now)."""
    context = {"agent": agent, "name": name, "text": text, "saved": None, "by": None}
    page = render(
        request,
        "memory_file.html",
        {**context, "opened": text_stamp(current), "current": current},
        status=409,
    )
    page[KEEP_BODY] = True  # this page is the answer, not an error page in its place
    return page
