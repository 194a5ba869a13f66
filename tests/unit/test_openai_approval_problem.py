"""What a stateless OpenAI-style caller is told when the agent's call needs a person's approval."""

from __future__ import annotations

from duragent.server.openai.completions import approval_problem
from duragent.sessions.stream import Position, StreamEvent


def asking(tool: str, command: str) -> StreamEvent:
    return StreamEvent(Position(3), "approval_required", {"call_id": "c1", "tool": tool, "command": command})


def test_a_command_is_named_as_the_command() -> None:
    problem = approval_problem(asking("bash", "rm -rf build"))
    assert "the agent asked to run `rm -rf build`, which its policy" in problem.message


def test_a_tool_other_than_bash_is_named_beside_its_arguments() -> None:
    problem = approval_problem(asking("time__get_current_time", '{"timezone":"UTC"}'))
    assert 'to call the tool `time__get_current_time` with `{"timezone":"UTC"}`' in problem.message
