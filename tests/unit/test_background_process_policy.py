"""What a person approves for `background_process` write and send_keys: the text typed, not only
the process it goes to (a shell the person let run would otherwise take any later command)."""

from __future__ import annotations

from pathlib import Path

import pytest

from duragent.runtime.policy import load_policy
from duragent.tools.background_process import BackgroundProcessTool
from duragent.tools.base import ToolContext


@pytest.mark.parametrize(("action", "field"), [("write", "input"), ("send_keys", "keys")])
def test_allow_always_on_text_typed_into_a_process_allows_that_text_only(
    tmp_path: Path, action: str, field: str
) -> None:
    agent_dir = tmp_path / "agents" / "helper"
    agent_dir.mkdir(parents=True)
    tool = BackgroundProcessTool()
    ctx = ToolContext(agent="helper", session_id="s_x", workdir=tmp_path / "work")
    approved = tool.parse_arguments({"action": action, "handle": "proc_1", field: "ls -la\n"})
    later = tool.parse_arguments({"action": action, "handle": "proc_1", field: "cat ../../run/tokens.json\n"})
    subject, invocation = tool.policy_subject(approved, ctx)
    assert "ls -la" in invocation  # the approval prompt shows what is typed

    load_policy(agent_dir).allow_always(subject, invocation)  # the person's "allow always"
    policy = load_policy(agent_dir)

    assert policy.decide(*tool.policy_subject(approved, ctx)).decision == "allow"
    assert policy.decide(*tool.policy_subject(later, ctx)).decision == "ask"
