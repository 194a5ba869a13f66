"""Dashboard: the data repository's timeline (as `duragent history` shows it), diffs, revert.

The history and revision readers are imported by the pages that show them, not by every
`serve` start (which registers these routes but seldom serves them).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from duragent.errors import UsageError
from duragent.server.problems import HttpProblem
from duragent.server.state import STATE
from duragent.web.login import UI_PREFIX, current_login, form_endpoint, require_admin
from duragent.web.pages import render, see_other

if TYPE_CHECKING:
    from duragent.vcs.repo import GitRepo
    from duragent.workspace import Workspace

#: Commits shown on the timeline.
TIMELINE_LIMIT = 100


def _repo(workspace: Workspace) -> GitRepo:
    repo = workspace.repo
    if repo is None:
        raise UsageError("git is disabled for this workspace (git.enabled: false): there is no history")
    return repo


def _agent_files(workspace: Workspace, files: list[str]) -> list[str]:
    """Those of `files` (repo-relative) that define agents: reverting them rewrites an agent, which
    the API leaves to the admin token (`/api/admin/v1/agents`)."""
    repo = _repo(workspace)
    try:
        folder = repo.relative(workspace.config.agents_path).strip("/")
    except ValueError:
        return []
    if folder in ("", "."):
        return files
    return [f for f in files if f == folder or f.startswith(folder + "/")]


async def timeline(request: web.Request) -> web.Response:
    """GET /ui/history."""
    state = request.app[STATE]
    config = state.config
    entries = []
    if config.git.enabled:
        from duragent.vcs.history import read_history

        entries = await asyncio.to_thread(
            read_history, config.data_path, limit=TIMELINE_LIMIT, agent_author=config.git.author
        )
    return render(
        request,
        "history.html",
        {"entries": entries, "git": config.git.enabled, "reverted": request.query.get("reverted")},
    )


async def revision(request: web.Request) -> web.Response:
    """GET /ui/history/{sha}: one change, its diff (but an agent definition's only to a login made with
    the admin token), and whether it can be reverted."""
    from duragent.vcs.revisions import RevertRefused, check_revertible, show_revision

    state = request.app[STATE]
    repo = _repo(state.workspace)
    shown = await asyncio.to_thread(show_revision, repo, request.match_info["sha"], raw=True)
    revertible, append_only = state.workspace.revert_scope()
    files: list[str] = []
    kept: list[str] = []
    refused = None
    try:
        plan = await asyncio.to_thread(
            check_revertible, repo, shown.sha, revertible=revertible, append_only=append_only
        )
        files, kept = plan.files, plan.kept
    except RevertRefused as exc:
        refused = str(exc)
    admin = current_login(request).admin
    context = {
        "rev": shown,
        # An agent's files are the admin API's to show (`GET /api/admin/v1/agents/{name}`).
        "hidden": [] if admin else _agent_files(state.workspace, [d.path for d in shown.diffs]),
        "files": files,
        "kept": kept,
        "refused": refused,
        "needs_admin": bool(_agent_files(state.workspace, files)) and not admin,
    }
    return render(request, "revision.html", context)


@form_endpoint
async def revert(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    """POST /ui/history/{sha}/revert (confirm=yes): undo the change with a commit by the person;
    409 when it cannot be now (later edits of the same lines, say), nothing written; 403 for a
    change to an agent's definition by a login not made with the admin token."""
    from duragent.vcs.revisions import RevertConflict, RevertRefused, check_revertible, revert_revision

    state = request.app[STATE]
    repo = _repo(state.workspace)
    # Once: `HEAD` (any name) checked and reverted apart could be two commits, the one a login
    # without the admin token may revert and an agent's definition committed in between.
    sha = await asyncio.to_thread(repo.resolve, request.match_info["sha"])
    if form.get("confirm") != "yes":
        raise see_other(f"{UI_PREFIX}/history/{sha}")
    revertible, append_only = state.workspace.revert_scope()
    if not current_login(request).admin:
        try:
            plan = await asyncio.to_thread(
                check_revertible, repo, sha, revertible=revertible, append_only=append_only
            )
        except RevertRefused as refused:
            raise HttpProblem(409, str(refused)) from None
        if _agent_files(state.workspace, plan.files):
            require_admin(request, "reverting a change to an agent's definition")
    config = state.workspace.config
    memory_root = config.service_path("memory") if config.services.memory.backend == "filesystem" else None
    edits = state.workspace.human_edits
    try:
        result = await asyncio.to_thread(
            revert_revision,
            repo,
            sha,
            revertible=revertible,
            append_only=append_only,
            memory_root=memory_root,
            guard=state.workspace.guard,
            # the agent's write to these files its committer has not committed yet is committed as
            # the agent's first: the person's revert must not carry its lines in
            before_write=edits.commit_agent_write if edits is not None else None,
        )
    except (RevertRefused, RevertConflict) as refused:
        raise HttpProblem(409, str(refused)) from None  # the files as they are stand in the way
    # No sha with files written: the server's edit watcher saw the files change and committed
    # them (as the person) before this revert's own commit could.
    outcome = result.sha or ("watcher" if result.files else "nothing")
    raise see_other(f"{UI_PREFIX}/history?reverted={outcome}")
