"""One provider per distinct model configuration, found again for every turn of an agent."""

from __future__ import annotations

from pathlib import Path

from duragent.agents.loader import Agent
from duragent.runtime.providers import ProviderPool
from tests.integration import turn_setup

AGENT_YAML = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: {name}
spec:
  model:
    provider: openai
    name: {model}
    base_url: http://127.0.0.1:9/v1
"""


def agent_in(root: Path, name: str, model: str) -> Agent:
    return turn_setup.agent_in(root, AGENT_YAML.format(name=name, model=model), name=name)


async def test_an_agent_edited_to_another_model_gets_that_models_provider(tmp_path: Path) -> None:
    pool = ProviderPool({"OPENAI_API_KEY": "sk-test"})
    try:
        first = agent_in(tmp_path, "helper", "gpt-test")
        provider = pool.for_agent(first)
        assert pool.for_agent(first) is provider
        edited = agent_in(tmp_path, "helper", "gpt-other")
        assert pool.for_agent(edited) is not provider
        # the same settings again (a session still on the old definition): the same provider
        assert pool.for_agent(agent_in(tmp_path, "helper", "gpt-test")) is provider
        assert pool.for_agent(agent_in(tmp_path, "second", "gpt-test")) is provider
    finally:
        await pool.close()
