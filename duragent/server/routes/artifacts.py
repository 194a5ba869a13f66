"""Artifacts of a session's agent over HTTP: list them, download one (`/api/v1/sessions/{id}/artifacts`).

Artifacts belong to an agent (`<agent>/<name>` in the artifact store); a session's routes show its
agent's, with the same auth as every `/api/v1` route. Bytes are streamed from the store (files or
S3) as they are read, never held whole in memory.
"""

from __future__ import annotations

from aiohttp import web

from duragent.server.bodies import (
    ArtifactList,
    ArtifactOut,
    ArtifactsQuery,
    ProblemOut,
    json_reply,
    read_query,
)
from duragent.server.openapi import documented
from duragent.server.state import STATE
from duragent.sessions.state import resume
from duragent.stores.base import ArtifactNotFound, ArtifactRef
from duragent.stores.filesystem.artifacts import check_artifact_name
from duragent.tools.artifacts import is_media_type


async def _agent_of(request: web.Request) -> str:
    """The agent of the session in the path (404 problem when there is no such session)."""
    state = request.app[STATE]
    session_id = request.match_info["session_id"]
    live = state.sessions.live.get(session_id)
    if live is not None:
        return live.agent.name
    return (await resume(state.workspace.stores.sessions, session_id)).agent


def _out(request: web.Request, ref: ArtifactRef) -> ArtifactOut:
    meta = ref.meta
    return ArtifactOut(
        name=ref.name,
        content_type=meta.content_type,
        size=meta.size,
        sha256=meta.sha256,
        created_at=meta.created_at.isoformat().replace("+00:00", "Z") if meta.created_at else None,
        download=f"/api/v1/sessions/{request.match_info['session_id']}/artifacts/{ref.name}",
    )


@documented(
    "The artifacts of the session's agent, sorted by name (`prefix` narrows them).",
    query=ArtifactsQuery,
    responses={200: ArtifactList, 404: ProblemOut, 503: ProblemOut},
)
async def list_artifacts(request: web.Request) -> web.Response:
    """GET /api/v1/sessions/{id}/artifacts."""
    query = read_query(request, ArtifactsQuery)
    agent = await _agent_of(request)
    store = request.app[STATE].workspace.stores.artifacts
    refs = await store.list(agent, prefix=query.prefix, limit=query.limit)
    return json_reply(ArtifactList(agent=agent, artifacts=[_out(request, ref) for ref in refs]))


@documented(
    "Download one artifact of the session's agent (its bytes, with its content type).",
    responses={404: ProblemOut, 503: ProblemOut},
    binary=True,
)
async def download_artifact(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/sessions/{id}/artifacts/{name}: the bytes, streamed."""
    # a name no artifact can have (`../x`, a NUL) is a 400 saying which rule it breaks, not a 404
    name = check_artifact_name(request.match_info["name"])
    agent = await _agent_of(request)
    store = request.app[STATE].workspace.stores.artifacts
    # The name itself sorts first among those it prefixes, so one listed ref is enough.
    found = await store.list(agent, prefix=name, limit=1)
    if not found or found[0].name != name:
        raise ArtifactNotFound(f"artifact {name!r} of agent {agent} not found")
    ref = found[0]
    # (one stored before the tool checked it, or an MCP server's image type: the bytes still download)
    content_type = (
        ref.meta.content_type if is_media_type(ref.meta.content_type) else "application/octet-stream"
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{name.rsplit("/", 1)[-1]}"',
            "X-Content-Type-Options": "nosniff",
        }
    )
    if ref.meta.size is not None:
        response.content_length = ref.meta.size
    chunks = store.get(ref)
    first = await anext(chunks, b"")  # a store error becomes a problem reply, not a broken body
    await response.prepare(request)
    if first:
        await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
