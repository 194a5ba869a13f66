"""The names MCP tools get for the model: distinct, stable, and read back by the policy."""

from __future__ import annotations

import itertools
import re

import pytest

from duragent.mcp.naming import split_tool_name, tool_names
from duragent.runtime.policy import ToolPolicy

LONG = "summarise_" + "x" * 70


def names_of(tools: list[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    return dict(zip(tools, tool_names(tools), strict=True))


def test_a_tool_whose_name_clashes_once_made_safe_gets_a_numbered_name() -> None:
    assert names_of([("files", "a.b"), ("files", "a_b"), ("files", "a/b")]) == {
        ("files", "a_b"): "files__a_b",  # its own name, unchanged: it keeps it
        ("files", "a.b"): "files__a_b__2",
        ("files", "a/b"): "files__a_b__3",
    }


@pytest.mark.parametrize(
    "tools",
    [
        [("files", "a.b"), ("files", "a_b"), ("files", "a_b__2"), ("files", "step__1")],
        [("docs", LONG + "A"), ("docs", LONG + "B"), ("docs", LONG + "C"), ("docs", "short")],
        [("x_", "y"), ("x", "_y"), ("x", "y")],
    ],
    ids=["suffix-like-names", "cut-at-64", "two-servers"],
)
def test_names_are_distinct_model_safe_and_the_same_whatever_the_listing_order(
    tools: list[tuple[str, str]],
) -> None:
    named = names_of(tools)

    assert len(set(named.values())) == len(tools)
    assert all(name is not None and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name) for name in named.values())
    for order in itertools.permutations(tools):
        assert names_of(list(order)) == named


def test_a_name_that_looks_numbered_is_numbered_so_the_policy_reads_it_right() -> None:
    assert names_of([("files", "a_b__2"), ("files", "a.b"), ("files", "a_b")]) == {
        ("files", "a_b"): "files__a_b",
        ("files", "a.b"): "files__a_b__2",
        ("files", "a_b__2"): "files__a_b__2__1",
    }
    assert split_tool_name("files__a_b__2__1") == ("files", "a_b__2")
    assert split_tool_name("files__a_b__2") == ("files", "a_b")


@pytest.mark.parametrize("pattern", ["mcp:files:a.b", "mcp:files:a_b", "files__a_b__2"])
def test_a_deny_naming_a_renumbered_tool_holds_over_a_server_wide_allow(pattern: str) -> None:
    policy = ToolPolicy(mode="ask", allow=("mcp:files:*",), deny=(pattern,))
    renumbered = names_of([("files", "a.b"), ("files", "a_b")])[("files", "a.b")]

    assert renumbered == "files__a_b__2"
    assert policy.decide(renumbered, "{}").decision == "deny"
    assert policy.decide("files__other", "{}").decision == "allow"


def test_a_deny_naming_a_long_tool_holds_for_the_one_cut_and_numbered() -> None:
    tools = [("docs", LONG + "A"), ("docs", LONG + "B")]
    policy = ToolPolicy(mode="ask", allow=("mcp:docs:*",), deny=(f"mcp:docs:{LONG}B",))

    assert [policy.decide(str(name), "{}").decision for name in tool_names(tools)] == ["deny", "deny"]
