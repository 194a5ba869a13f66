"""Trimming the conversation to the context window: never a request a provider would reject.

The history sent must open with a user message, keep every tool batch with the assistant
message that opened it, keep the last user message, and fit the budget (large tool results
are cut rather than whole turns dropped).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duragent.agents.loader import Agent, load_agent
from duragent.llm.types import Message
from duragent.runtime.context import AssembledContext, assemble_context, estimate_tokens
from duragent.sessions.state import SessionState

WINDOW = 16_000

AGENT_YAML = f"""\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: trim
spec:
  model:
    provider: openai
    name: test-model
    base_url: http://127.0.0.1:9/v1
  context:
    max_tokens: {WINDOW}
  system_prompt: You are a test agent.
"""
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    folder = tmp_path_factory.mktemp("agents") / "trim"
    folder.mkdir()
    (folder / "agent.yaml").write_text(AGENT_YAML)
    loaded, _ = load_agent(folder, env={"OPENAI_API_KEY": "sk-test"})
    return loaded


def assemble(agent: Agent, conversation: list[dict[str, Any]]) -> AssembledContext:
    return assemble_context(agent, SessionState("s_trim", conversation=conversation), now=NOW)


def batch(turn: int, step: int, sizes: list[int]) -> list[dict[str, Any]]:
    """An assistant message calling len(sizes) tools, and their results of `sizes` characters."""
    calls = [
        {"id": f"c{turn}.{step}.{i}", "name": "bash", "arguments": {"command": "ls"}}
        for i in range(len(sizes))
    ]
    results = [
        {"role": "tool", "tool_call_id": call["id"], "name": "bash", "content": "x" * size}
        for call, size in zip(calls, sizes, strict=True)
    ]
    return [{"role": "assistant", "content": "", "tool_calls": calls}, *results]


def check_valid(context: AssembledContext, conversation: list[dict[str, Any]]) -> None:
    """What every provider accepts, and what the issue promises."""
    system, *history = context.messages
    assert system.role == "system"
    assert history, "the history is never dropped whole"
    assert history[0].role == "user", "the history opens with a user message"
    open_calls: set[str] = set()
    for message in history:
        if message.role == "tool":
            assert message.tool_call_id in open_calls, "a tool result follows the message that called it"
            open_calls.discard(message.tool_call_id or "")
        else:
            assert not open_calls, "every call of a kept batch keeps its result"
            open_calls = {call.id for call in message.tool_calls}
    last_user = next(entry for entry in reversed(conversation) if entry["role"] == "user")
    assert Message("user", last_user["content"]) in history, "the last user message is kept"
    user_alone = estimate_tokens(last_user["content"]) + 4
    fixed = context.tokens - sum(_tokens(message) for message in history)
    if fixed + user_alone <= context.budget:
        assert context.tokens <= context.budget


def _tokens(message: Message) -> int:
    size = estimate_tokens(message.content or "") + 4
    for call in message.tool_calls:
        size += estimate_tokens(call.name + json.dumps(call.arguments)) + 4
    return size


def test_one_user_message_and_three_16kb_tool_results_keep_the_user_message(agent: Agent) -> None:
    conversation = [{"role": "user", "content": "read these three files"}, *batch(0, 0, [16_384] * 3)]
    context = assemble(agent, conversation)
    roles = [message.role for message in context.messages]
    assert roles == ["system", "user", "assistant", "tool", "tool", "tool"]
    assert "characters cut" in (context.messages[-1].content or ""), "large results are cut instead"
    check_valid(context, conversation)


def test_a_cut_inside_an_older_batch_moves_to_a_turn_boundary(agent: Agent) -> None:
    conversation = [
        {"role": "user", "content": "first"},
        *batch(0, 0, [30_000, 30_000, 30_000]),
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "ok"},
    ]
    context = assemble(agent, conversation)
    assert [m.content for m in context.messages[1:]] == ["second", "ok"]
    assert context.history_dropped == 6


turn_strategy = st.tuples(
    st.integers(0, 3000),  # the user message's length
    st.lists(st.lists(st.integers(0, 30_000), min_size=1, max_size=3), max_size=4),  # tool batches
    st.booleans(),  # does the turn end with an answer
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=st.lists(turn_strategy, min_size=1, max_size=6))
def test_any_history_is_trimmed_to_a_valid_conversation_within_budget(
    agent: Agent, turns: list[tuple[int, list[list[int]], bool]]
) -> None:
    conversation: list[dict[str, Any]] = []
    for turn, (user_size, batches, answered) in enumerate(turns):
        conversation.append({"role": "user", "content": f"turn {turn} " + "u" * user_size})
        for step, sizes in enumerate(batches):
            conversation += batch(turn, step, sizes)
        if answered:
            conversation.append({"role": "assistant", "content": f"answer {turn}"})
    check_valid(assemble(agent, conversation), conversation)


def test_a_short_history_is_sent_whole(agent: Agent) -> None:
    conversation = [{"role": "user", "content": "hi"}]
    context = assemble(agent, conversation)
    assert context.messages[-1] == Message("user", "hi")
    assert context.history_dropped == 0


def test_a_clients_leading_instructions_survive_trimming(agent: Agent) -> None:
    """A stateless OpenAI caller's system message stays ahead of the history, even when old turns go."""
    old_turns = [
        message
        for turn in range(40)
        for message in (
            {"role": "user", "content": f"question {turn} " + "q" * 2_000},
            {"role": "assistant", "content": f"answer {turn} " + "a" * 2_000},
        )
    ]
    conversation = [
        {"role": "system", "content": "Answer in one word."},
        *old_turns,
        {"role": "user", "content": "And of France?"},
    ]

    context = assemble(agent, conversation)

    _, first, second, *rest = context.messages
    assert (first.role, first.content) == ("system", "Answer in one word.")
    assert second.role == "user"
    assert not (second.content or "").startswith("question 0 ")
    assert rest[-1].content == "And of France?"
    assert context.history_dropped > 0
    assert context.tokens <= context.budget


def test_tool_definitions_come_off_the_budget_before_the_conversation(agent: Agent) -> None:
    conversation: list[dict[str, Any]] = []
    for turn in range(40):
        conversation.append({"role": "user", "content": f"question {turn} " + "q" * 1000})
        conversation.append({"role": "assistant", "content": f"answer {turn}"})
    state = SessionState("s_tools", conversation=conversation)
    without = assemble_context(agent, state, now=NOW)
    tools = without.budget // 2
    with_tools = assemble_context(agent, state, now=NOW, tools_tokens=tools)

    assert with_tools.tools_tokens == tools
    assert with_tools.history_kept < without.history_kept
    assert with_tools.tokens <= with_tools.budget
    check_valid(with_tools, conversation)
