"""Agents as clients see them: GET /api/v1/agents and /api/v1/agents/{name} (Rust shapes)."""

from __future__ import annotations

from aiohttp import web

from duragent.server.bodies import (
    AgentDetail,
    AgentList,
    AgentMetadataOut,
    AgentModelOut,
    AgentSpecOut,
    AgentSummaryOut,
    ProblemOut,
    json_reply,
)
from duragent.server.openapi import documented
from duragent.server.state import STATE


@documented("Every agent that loads.", responses={200: AgentList})
async def list_agents(request: web.Request) -> web.Response:
    """Name, description and version of every valid agent, sorted by name."""
    summaries = request.app[STATE].agents.summaries()
    agents = [
        AgentSummaryOut(name=s.name, description=s.description or None, version=s.version)
        for s in summaries
        if s.valid
    ]
    return json_reply(AgentList(agents=agents))


@documented("One agent: metadata, model and prompt texts.", responses={200: AgentDetail, 404: ProblemOut})
async def get_agent(request: web.Request) -> web.Response:
    """The agent's definition (soul, tools and policy are not shown)."""
    agent = request.app[STATE].agents.get(request.match_info["name"])
    document = agent.document
    model = agent.spec.model
    detail = AgentDetail(
        api_version=document.api_version,
        kind=document.kind,
        metadata=AgentMetadataOut(
            name=document.metadata.name,
            description=document.metadata.description,
            version=document.metadata.version,
            labels=dict(document.metadata.labels) or None,
        ),
        spec=AgentSpecOut(
            model=AgentModelOut(
                provider=str(model.provider),
                name=model.name,
                temperature=model.temperature,
                max_output_tokens=model.max_output_tokens,
                base_url=model.base_url,
            ),
            system_prompt=agent.system_prompt or None,
            instructions=agent.instructions or None,
        ),
    )
    return json_reply(detail)
