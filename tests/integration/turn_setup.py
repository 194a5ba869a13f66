"""What the tests of a turn through the runtime set up: an agent folder under a data directory,
and a Runtime on that directory talking to the fake model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from duragent.agents.loader import Agent, load_agent
from duragent.runtime.events import ApprovalRequired
from duragent.runtime.loop import Runtime
from duragent.runtime.providers import ProviderPool
from duragent.sessions.log import SessionLog
from duragent.stores.filesystem.memory import FilesystemMemoryStore


def agent_in(data: Path, agent_yaml: str, *, name: str = "helper", policy: str | None = None) -> Agent:
    """Agent `name` of `data/agents/<name>/agent.yaml` (and its policy.yaml, if given), loaded;
    written again over an agent already there, as a person's edit would."""
    directory = data / "agents" / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "agent.yaml").write_text(agent_yaml)
    if policy is not None:
        (directory / "policy.yaml").write_text(policy)
    return load_agent(directory, env={"OPENAI_API_KEY": "sk-test"})[0]


@asynccontextmanager
async def runtime_on(data: Path, *, memory: bool = True, workdir: bool = True) -> AsyncIterator[Runtime]:
    """A Runtime on `data` (memory in `data/memory`, tools run in `data/work` unless turned off)."""
    pool = ProviderPool({"OPENAI_API_KEY": "sk-test"})
    try:
        yield Runtime(
            provider_for=pool.for_agent,
            data_dir=data,
            memory=FilesystemMemoryStore(data / "memory") if memory else None,
            workdir_for=(lambda agent: data / "work") if workdir else None,
        )
    finally:
        await pool.close()


async def turn_answering(
    runtime: Runtime, session: SessionLog, agent: Agent, message: str, decision: str = "deny"
) -> list[object]:
    """The events of a turn for `message`, each approval it asks for answered with `decision`."""
    events: list[object] = []
    async for event in runtime.run_turn(session, agent, message):
        events.append(event)
        if isinstance(event, ApprovalRequired):
            runtime.approvals.decide(event.call_id, decision, session_id=session.session_id)
    return events
