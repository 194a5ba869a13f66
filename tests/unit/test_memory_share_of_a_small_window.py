"""Memory's share of the context followed an older copy of the budget rule: with a 4,096-token
window and no max_output_tokens it kept 4,096 tokens for the reply, leaving memory 64 tokens
(the floor's share) while the conversation's budget had already been fixed to keep a quarter."""

from __future__ import annotations

from pathlib import Path

from duragent.agents.loader import load_agent
from duragent.runtime.context import MEMORY_SHARE, context_budget
from duragent.runtime.memory_context import memory_budget


def test_memory_gets_its_share_of_the_same_budget_the_conversation_has(tmp_path: Path) -> None:
    folder = tmp_path / "helper"
    folder.mkdir()
    (folder / "agent.yaml").write_text(
        "name: helper\nmodel:\n  provider: openai\n  name: gpt-test\ncontext:\n  max_tokens: 4096\n"
    )
    agent, _ = load_agent(folder, env={"OPENAI_API_KEY": "sk-test"})

    assert memory_budget(agent) == int(context_budget(agent) * MEMORY_SHARE)
    assert memory_budget(agent) > 500
