"""Merging a deployed agent's folder on one worker with its row in PostgreSQL, file by file
against what the two last agreed on."""

from __future__ import annotations

from duragent.cluster.agent_merge import merge_folders, merge_policy

AGENT = {"agent.yaml": "name: bot\n"}
POLICY = "# ours\nallow:\n  - bash:echo hi\n"


def with_policy(text: str, **more: str) -> dict[str, str]:
    return {**AGENT, "policy.yaml": text, **more}


def test_a_file_only_one_side_changed_takes_that_sides_version() -> None:
    agreed = {**AGENT, "NOTES.md": "old\n"}
    local = {**AGENT, "NOTES.md": "old\n", "SOUL.md": "mine\n"}
    row = {"agent.yaml": "name: bot\ndescription: new\n"}
    assert merge_folders(agreed, local, row) == {"agent.yaml": row["agent.yaml"], "SOUL.md": "mine\n"}


def test_a_file_both_sides_changed_takes_the_rows_version() -> None:
    agreed = {**AGENT, "SOUL.md": "old\n"}
    assert merge_folders(agreed, {**AGENT, "SOUL.md": "mine\n"}, {**AGENT, "SOUL.md": "theirs\n"}) == {
        **AGENT,
        "SOUL.md": "theirs\n",
    }


def test_allow_always_on_both_sides_keeps_both_patterns_in_the_rows_text() -> None:
    agreed = with_policy(POLICY)
    local = with_policy(POLICY + "  - bash:uname\n")
    row = with_policy(POLICY + "  - bash:ls\n")
    merged = merge_folders(agreed, local, row)
    assert merged == with_policy(POLICY + '  - bash:ls\n  - "bash:uname"\n')


def test_a_pattern_the_row_dropped_stays_dropped_when_this_side_did_not_add_it() -> None:
    agreed = with_policy(POLICY + "  - bash:rm *\n")
    local = with_policy(POLICY + "  - bash:rm *\n  - bash:uname\n")
    row = with_policy(POLICY)
    assert merge_folders(agreed, local, row) == with_policy(POLICY + '  - "bash:uname"\n')


def test_without_a_record_what_only_the_folder_has_is_kept_and_the_row_wins_the_rest() -> None:
    local = with_policy("allow:\n  - bash:uname\n", **{"SOUL.md": "mine\n", "NOTES.md": "mine\n"})
    row = {"agent.yaml": "name: bot\ndescription: new\n", "SOUL.md": "theirs\n"}
    assert merge_folders(None, local, row) == {
        "agent.yaml": row["agent.yaml"],
        "NOTES.md": "mine\n",
        "SOUL.md": "theirs\n",
        "policy.yaml": "allow:\n  - bash:uname\n",
    }


def test_an_agent_missing_on_one_side() -> None:
    assert merge_folders(AGENT, None, AGENT) == AGENT  # a mirror deleted by hand takes the row
    assert merge_folders(None, None, AGENT) == AGENT
    assert merge_folders(AGENT, AGENT, None) is None  # removed on another worker
    assert merge_folders(None, AGENT, None) == AGENT  # never shared: this worker shares it


def test_a_policy_that_does_not_parse_leaves_the_rows() -> None:
    assert merge_policy(None, "allow: {not: a list}\n", POLICY) == POLICY
    assert merge_policy("allow: [", POLICY + "  - bash:uname\n", POLICY) == POLICY + '  - "bash:uname"\n'
