"""The memory slot of the context: MEMORY.md, the last N daily files, the shared world memory."""

from __future__ import annotations

from datetime import date, timedelta

from duragent.agents.loader import Agent
from duragent.stores.base import MemoryStore


async def gather_memory(store: MemoryStore, agent: Agent, today: date) -> str:
    """Memory text for the agent's context, oldest daily file last so a budget cut drops it first."""
    spec = agent.spec.memory
    if spec is None or not spec.enabled:
        return ""
    parts: list[str] = []
    long_term = (await store.read_long_term(agent.name)).strip()
    if long_term:
        parts.append(f"# Long-term memory (MEMORY.md)\n\n{long_term}")
    for offset in range(spec.recent_days):
        day = today - timedelta(days=offset)
        text = await store.read_day(agent.name, day)
        if text and text.strip():
            parts.append(f"# Memory of {day.isoformat()}\n\n{text.strip()}")
    world = await store.read_world()
    for topic, text in sorted(world.items()):
        if text.strip():
            parts.append(f"# World knowledge: {topic}\n\n{text.strip()}")
    return "\n\n".join(parts)
