"""/openapi.json documents what each route really answers: its success status, and every shape a
status can carry (a 202 to POST /messages is a pending approval, a queued message or a pause)."""

from __future__ import annotations

import asyncio
from typing import Any

import jsonschema

from duragent.testing.fake_llm import FakeLLMServer, text
from tests.e2e.server_harness import Api, ApiFactory
from tests.waiting import eventually


def _validates(document: dict[str, Any], response: dict[str, Any], body: Any) -> None:
    schema = response["content"]["application/json"]["schema"]
    # the document itself is the root, so `#/components/schemas/...` references resolve
    jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(body)


async def test_every_operation_documents_its_success_status(start_api: ApiFactory) -> None:
    api: Api = await start_api(git=False)
    status, document = await api.call("GET", "/openapi.json")
    assert status == 200
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if not any(code.startswith("2") for code in operation["responses"])
    ]
    assert undocumented == []
    sessions = document["paths"]["/api/v1/sessions/{session_id}"]
    assert "204" in sessions["delete"]["responses"]
    assert "204" in document["paths"]["/api/admin/v1/agents/{name}"]["delete"]["responses"]
    # a full or read-only data directory answers 503 wherever something is stored
    for path in ("/api/v1/sessions", "/api/v1/sessions/{session_id}/messages"):
        assert "503" in document["paths"][path]["post"]["responses"], path


async def test_a_queued_message_matches_the_documented_202(
    start_api: ApiFactory, fake_llm: FakeLLMServer
) -> None:
    api: Api = await start_api(git=False)
    _, document = await api.call("GET", "/openapi.json")
    fake_llm.enqueue(text("slow reply", chunks=5, chunk_delay=0.1), text("second reply"))
    session_id = await api.new_session()
    messages = f"/api/v1/sessions/{session_id}/messages"
    first = asyncio.create_task(api.call("POST", messages, {"content": "first"}))

    async def busy() -> bool | None:
        _, session = await api.call("GET", f"/api/v1/sessions/{session_id}")
        return True if session["busy"] else None

    await eventually(busy)
    status, queued = await api.call("POST", messages, {"content": "second"})
    assert (status, queued) == (202, {"status": "queued", "position": 1})
    documented = document["paths"]["/api/v1/sessions/{session_id}/messages"]["post"]["responses"]
    _validates(document, documented["202"], queued)
    assert (await first)[0] == 200
