"""`artifact_put`'s content type becomes the Content-Type header of the artifact's download: a
model that gives one with a line break (or anything but a media type) is told so, naming the
argument, and nothing is stored, so a person downloading the agent's artifacts never meets one
the server cannot send. The server is real; the tool runs against its artifact store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.server.state import STATE
from duragent.stores.base import ArtifactMeta
from duragent.tools.artifacts import ArtifactPutTool
from duragent.tools.base import ToolContext
from duragent.tools.registry import call_tool
from tests.e2e.server_harness import ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "artifact-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    "content_type",
    ["text/html\r\nSet-Cookie: session=stolen", "text/plain\n", "markdown", "", "text/" + "x" * 300],
    ids=["header-injection", "trailing-newline", "no-subtype", "empty", "too-long"],
)
async def test_a_content_type_that_is_no_media_type_is_refused_and_nothing_stored(
    start_api: ApiFactory, tmp_path: Path, content_type: str
) -> None:
    api = await start_api(git=False, api_token=TOKEN)
    status, created = await api.call("POST", "/api/v1/sessions", {"agent": "helper"}, headers=AUTH)
    assert status == 201, created
    base = f"/api/v1/sessions/{created['session_id']}/artifacts"
    store = api.server.app[STATE].workspace.stores.artifacts
    ctx = ToolContext(agent="helper", session_id=created["session_id"], workdir=tmp_path, artifacts=store)
    arguments = {"name": "report.html", "content": "<p>hi</p>", "content_type": content_type}

    refused = await call_tool(ArtifactPutTool(), arguments, ctx)

    assert not refused.ok
    assert refused.content.startswith(
        "invalid arguments for artifact_put: content_type: must be a media type such as text/markdown"
    )
    status, listed = await api.call("GET", base, headers=AUTH)
    assert listed["artifacts"] == []
    # the same call with a media type is stored and downloads with it
    stored = await call_tool(
        ArtifactPutTool(), {**arguments, "content_type": "text/html; charset=utf-8"}, ctx
    )
    assert stored.ok, stored.content
    async with api.http.get(api.url(f"{base}/report.html"), headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "Set-Cookie" not in response.headers
        assert await response.read() == b"<p>hi</p>"


async def test_an_artifact_stored_with_a_broken_content_type_still_downloads_as_bytes(
    start_api: ApiFactory,
) -> None:
    """Stored before the tool checked it, or by an MCP server naming its image's type."""
    api = await start_api(git=False, api_token=TOKEN)
    status, created = await api.call("POST", "/api/v1/sessions", {"agent": "helper"}, headers=AUTH)
    assert status == 201, created
    store = api.server.app[STATE].workspace.stores.artifacts

    async def body() -> AsyncIterator[bytes]:
        yield b"<p>hi</p>"

    await store.put("helper", "old.html", body(), ArtifactMeta("text/html\r\nSet-Cookie: a=b"))
    url = api.url(f"/api/v1/sessions/{created['session_id']}/artifacts/old.html")
    async with api.http.get(url, headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert "Set-Cookie" not in response.headers
        assert await response.read() == b"<p>hi</p>"
