"""The base of response bodies, the process health replies and `json_reply`: what the health
routes need, kept apart from `duragent.server.bodies` so a starting server does not build every
request and reply model of the API before `/readyz` answers.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict


class Reply(BaseModel):
    """A response body."""

    model_config = ConfigDict(defer_build=True)


class Health(Reply):
    """GET /readyz."""

    status: Literal["ok", "degraded", "unavailable"]
    workspace_hash: str
    #: What stops the whole server (a store unreachable, a gateway down): 503.
    problems: list[str] = []
    warnings: list[str] = []
    #: Broken agents and their problems (`file:line:col: message`); the other agents still serve.
    agents: dict[str, list[str]] = {}
    #: Answering agents whose files load with warnings (an unknown key, ignored), by agent.
    agent_warnings: dict[str, list[str]] = {}
    #: What the server's duragent.yaml loaded with (an unknown key, ignored), `file:line:col: ...`.
    config_warnings: list[str] = []
    #: Sessions with a running turn or a pending approval, and clients attached to streams.
    busy: int = 0
    attached: int = 0


class VersionOut(Reply):
    """GET /version."""

    version: str
    commit: str | None = None
    build_date: str | None = None
    variant: str = "python"


def json_reply(reply: Reply, status: int = 200) -> web.Response:
    """A response whose body is `reply` (fields that are None left out)."""
    # Serialised straight to UTF-8 bytes: no str to encode again.
    body = reply.__pydantic_serializer__.to_json(reply, exclude_none=True)
    return web.Response(status=status, body=body, content_type="application/json", charset="utf-8")
