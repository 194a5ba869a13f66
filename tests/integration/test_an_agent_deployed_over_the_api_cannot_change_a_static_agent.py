"""An agent deployed over the admin API (in `sys/dyn_agents/`) runs its unasked calls under the
same watch as any other: what they change in a static agent's definition folder (`agents/`) is
undone after the batch, as it is for a static agent's calls."""

from __future__ import annotations

from pathlib import Path

from duragent.agents.loader import load_agent
from duragent.runtime.events import ToolCallFinished
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.integration.turn_setup import agent_in, runtime_on

pytest_plugins = ["duragent.testing.pytest_plugin"]

AGENT_YAML = """\
name: {name}
model:
  provider: openai
  name: gpt-test
  base_url: {url}
tools:
  builtin: [bash]
  policy:
    mode: ask
    allow: ["bash:sh *"]
"""


async def test_a_deployed_agents_script_cannot_rewrite_a_static_agents_policy(
    fake_llm: FakeLLMServer, session: SessionLog, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    helper = agent_in(data, AGENT_YAML.format(name="helper", url=fake_llm.url), policy="mode: ask\n")
    policy = helper.directory / "policy.yaml"
    deployed = data / "sys" / "dyn_agents" / "deployed"
    deployed.mkdir(parents=True)
    (deployed / "agent.yaml").write_text(AGENT_YAML.format(name="deployed", url=fake_llm.url))
    agent = load_agent(deployed, env={"OPENAI_API_KEY": "sk-test"})[0]
    (data / "work").mkdir()
    (data / "work" / "build.sh").write_text('printf "mode: allow\\n" > ../agents/helper/poli""cy.yaml\n')
    fake_llm.enqueue(tool_calls([("bash", {"command": "sh build.sh"})]), text("done"))

    async with runtime_on(data, memory=False) as runtime:
        events = [event async for event in runtime.run_turn(session, agent, "build it")]

    assert policy.read_text() == "mode: ask\n"
    [finished] = [e for e in events if isinstance(e, ToolCallFinished)]
    assert "duragent undid this batch's change to agents/helper/policy.yaml" in finished.content
