"""Artifacts over HTTP: a session's agent's artifacts listed and downloaded, behind the API token."""

from __future__ import annotations

from collections.abc import AsyncIterator

from duragent.server.state import STATE
from duragent.stores.base import ArtifactMeta
from tests.e2e.server_harness import ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "artifact-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_sessions_artifacts_are_listed_and_downloaded_with_the_api_token(
    start_api: ApiFactory,
) -> None:
    api = await start_api(git=False, api_token=TOKEN)
    status, created = await api.call("POST", "/api/v1/sessions", {"agent": "helper"}, headers=AUTH)
    assert status == 201, created
    session_id = created["session_id"]
    store = api.server.app[STATE].workspace.stores.artifacts
    report = "# Weekly\n\nAll good — ünïcödé.\n".encode()
    await store.put("helper", "reports/weekly.md", chunks(report), ArtifactMeta(content_type="text/markdown"))
    await store.put("helper", "data.bin", chunks(bytes(range(256)) * 400), ArtifactMeta())
    await store.put("pauser", "not-this-agents.txt", chunks(b"x"), ArtifactMeta())
    base = f"/api/v1/sessions/{session_id}/artifacts"

    status, listed = await api.call("GET", base, headers=AUTH)
    assert status == 200, listed
    assert listed["agent"] == "helper"
    assert [(a["name"], a["size"], a["content_type"]) for a in listed["artifacts"]] == [
        ("data.bin", 102400, "application/octet-stream"),
        ("reports/weekly.md", len(report), "text/markdown"),
    ]
    assert listed["artifacts"][1]["download"] == f"{base}/reports/weekly.md"
    status, narrowed = await api.call("GET", f"{base}?prefix=reports/", headers=AUTH)
    assert [a["name"] for a in narrowed["artifacts"]] == ["reports/weekly.md"]

    async with api.http.get(api.url(f"{base}/reports/weekly.md"), headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/markdown")
        assert 'filename="weekly.md"' in response.headers["Content-Disposition"]
        assert await response.read() == report
    async with api.http.get(api.url(f"{base}/data.bin"), headers=AUTH) as response:
        assert await response.read() == bytes(range(256)) * 400

    status, problem = await api.call("GET", f"{base}/reports/missing.md", headers=AUTH)
    assert status == 404, problem
    status, problem = await api.call("GET", f"{base}/not-this-agents.txt", headers=AUTH)
    assert status == 404, problem
    status, problem = await api.call("GET", f"{base}/..%2Fpauser%2Fnot-this-agents.txt", headers=AUTH)
    assert status in (400, 404), problem
    status, problem = await api.call("GET", "/api/v1/sessions/s_nosuchsession/artifacts", headers=AUTH)
    assert status == 404, problem

    async with api.anonymous() as http:
        for path in (base, f"{base}/reports/weekly.md"):
            async with http.get(api.url(path)) as response:
                assert response.status == 401, await response.text()


async def test_the_artifact_routes_are_in_the_openapi_document(start_api: ApiFactory) -> None:
    api = await start_api(git=False)
    status, document = await api.call("GET", "/openapi.json")
    assert status == 200
    listing = document["paths"]["/api/v1/sessions/{session_id}/artifacts"]["get"]
    download = document["paths"]["/api/v1/sessions/{session_id}/artifacts/{name}"]["get"]
    assert listing["security"] == download["security"] == [{"bearer": []}]
    assert {p["name"] for p in listing["parameters"]} >= {"session_id", "prefix", "limit"}
