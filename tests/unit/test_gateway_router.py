"""Routing rules, access control and reply chunking of the gateway router."""

from __future__ import annotations

import pytest

from duragent.agents.spec import AccessSpec
from duragent.config import RouteConfig
from duragent.gateways.access import admission_of, check_access, match_route
from duragent.gateways.chunking import split_message
from duragent.gateways.protocol import Routing


def routing(chat_type: str = "dm", chat_id: str = "c1", sender_id: str = "u1") -> Routing:
    return Routing(channel="telegram", chat_type=chat_type, chat_id=chat_id, sender_id=sender_id)


ROUTES = [
    RouteConfig.model_validate({"match": {"gateway": "Telegram", "chat_id": "-100"}, "agent": "team"}),
    RouteConfig.model_validate({"match": {"chat_type": "DM", "sender_id": "42"}, "agent": "owner"}),
    RouteConfig.model_validate({"match": {"gateway": "telegram"}, "agent": "assistant"}),
]


def test_first_matching_route_wins_with_case_insensitive_gateway_and_chat_type() -> None:
    assert match_route(ROUTES, "telegram", routing("group", chat_id="-100")) == "team"
    assert match_route(ROUTES, "discord", routing("dm", sender_id="42")) == "owner"
    assert match_route(ROUTES, "telegram", routing("dm", sender_id="7")) == "assistant"


def test_a_route_for_a_group_also_takes_its_forum_topics_and_threads() -> None:
    """A Telegram forum topic is a chat of its own (`-100:7`) in its group (`parent_id`): a route
    naming the group must take it, as the group's allowlist entry admits it."""
    topic = Routing(channel="telegram", chat_type="group", chat_id="-100:7", sender_id="u1", parent_id="-100")
    assert match_route(ROUTES, "telegram", topic) == "team"
    elsewhere = Routing(
        channel="telegram", chat_type="group", chat_id="-200:7", sender_id="u1", parent_id="-200"
    )
    assert match_route(ROUTES, "telegram", elsewhere) == "assistant"


def test_a_message_no_route_matches_has_no_agent() -> None:
    assert match_route(ROUTES, "discord", routing("dm", sender_id="7")) is None


def test_an_empty_match_is_a_catch_all() -> None:
    assert match_route([RouteConfig(agent="any")], "x", routing()) == "any"


def access(**values: object) -> AccessSpec:
    return AccessSpec.model_validate(values)


def test_a_stranger_is_denied_by_a_dm_allowlist_and_the_owner_allowed() -> None:
    spec = access(dm={"policy": "allowlist", "allowlist": ["42"]})
    assert check_access(spec, "telegram", routing(sender_id="42")).allowed
    denied = check_access(spec, "telegram", routing(sender_id="666"))
    assert not denied.allowed
    assert "666" in denied.reason


def test_group_allowlist_accepts_bare_ids_rust_channel_form_and_prefix_wildcards() -> None:
    spec = access(groups={"policy": "allowlist", "allowlist": ["-100", "telegram:-200", "-300*"]})
    for chat in ("-100", "-200", "-3001"):
        assert check_access(spec, "telegram", routing("group", chat_id=chat)).allowed
    assert not check_access(spec, "telegram", routing("supergroup", chat_id="-400")).allowed


def test_without_an_access_block_nobody_is_answered_and_the_reason_names_the_key() -> None:
    dm = check_access(AccessSpec(), "telegram", routing(sender_id="424242"))
    group = check_access(AccessSpec(), "telegram", routing("group", chat_id="-100"))

    assert (dm.allowed, dm.reason) == (False, "sender 424242 is not on spec.access.dm.allowlist")
    assert (group.allowed, group.reason) == (False, "chat -100 is not on spec.access.groups.allowlist")


def test_disabled_dms_deny_everyone_and_open_answers_anyone() -> None:
    assert not check_access(access(dm={"policy": "disabled"}), "t", routing()).allowed
    assert check_access(access(dm={"policy": "open"}), "t", routing(sender_id="7")).allowed
    assert check_access(access(groups={"policy": "open"}), "t", routing("group")).allowed
    assert AccessSpec().groups.activation == "mention"
    assert AccessSpec().debounce.total_seconds() == 1.5


def test_short_replies_are_one_piece() -> None:
    assert split_message("hello", 4096) == ["hello"]


def test_long_replies_split_at_paragraphs_within_the_limit() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 30 for i in range(40)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    pieces = split_message(text, 500)
    assert all(len(piece) <= 500 for piece in pieces)
    assert "\n\n".join(pieces) == text


def test_a_code_block_is_not_cut_between_fences_when_it_fits() -> None:
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(20)) + "\n```"
    text = "intro " * 50 + "\n\n" + code + "\n\nafter"
    pieces = split_message(text, 400)
    assert any(code in piece for piece in pieces)


def test_an_oversized_code_block_is_split_with_each_piece_fenced() -> None:
    code = "```\n" + "\n".join(f"line {i} " + "y" * 40 for i in range(100)) + "\n```"
    pieces = split_message(code, 1000)
    assert len(pieces) > 1
    for piece in pieces:
        assert len(piece) <= 1000
        assert piece.startswith("```\n")
        assert piece.endswith("\n```")


def test_one_enormous_word_is_hard_cut() -> None:
    pieces = split_message("z" * 10_000, 4096)
    assert [len(p) for p in pieces] == [4096, 4096, 1808]


@pytest.mark.parametrize("limit", [100, 4096])
def test_nothing_is_lost_when_splitting_plain_lines(limit: int) -> None:
    text = "\n".join(f"line {i}" for i in range(2000))
    pieces = split_message(text, limit)
    assert all(len(p) <= limit for p in pieces)
    assert "\n".join(pieces) == text


def test_a_plugin_told_the_admission_admits_whom_some_agent_would_answer_and_nobody_else() -> None:
    """What a plugin checks before fetching a file: the union of the routed agents' rules."""
    owner = access(dm={"policy": "allowlist", "allowlist": ["42"]}, groups={"policy": "disabled"})
    team = access(dm={"policy": "disabled"}, groups={"policy": "allowlist", "allowlist": ["telegram:-100*"]})
    admission = admission_of("telegram", [owner, team])

    def admits(**routing: str) -> bool:
        return admission.admits({"channel": "telegram", **routing})

    assert admits(chat_type="dm", chat_id="42", sender_id="42")
    assert not admits(chat_type="private", chat_id="666", sender_id="666")
    assert admits(chat_type="supergroup", chat_id="-1005", sender_id="666")
    assert admits(chat_type="group", chat_id="-2:7", parent_id="-1007", sender_id="666")
    assert not admits(chat_type="group", chat_id="-200", sender_id="42")
    assert not admits(chat_type="thread", chat_id="42", sender_id="42")
    assert admission_of("telegram", [access(dm={"policy": "open"})]).admits(
        {"chat_type": "dm", "chat_id": "1", "sender_id": "1"}
    )
