"""What the fast path of `chat` and `attach` takes on itself, and what it leaves to the full command."""

from __future__ import annotations

import pytest

from duragent.cli.quick_chat import TerminalOptions, parse_terminal_options


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("chat", [], TerminalOptions("chat")),
        ("chat", ["-a", "helper", "--new"], TerminalOptions("chat", agent="helper", new=True)),
        ("chat", ["--agent=helper", "-s", "s_01"], TerminalOptions("chat", agent="helper", session="s_01")),
        ("attach", [], TerminalOptions("attach")),
        ("attach", ["s_01M8"], TerminalOptions("attach", session="s_01M8")),
        ("attach", ["--last"], TerminalOptions("attach", last=True)),
        ("attach", ["-l"], TerminalOptions("attach", list_sessions=True)),
    ],
)
def test_plain_chats_and_attaches_are_taken(command: str, args: list[str], expected: TerminalOptions) -> None:
    assert parse_terminal_options(command, args) == expected


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("chat", ["--help"]),
        ("chat", ["--server", "http://127.0.0.1:9"]),
        ("chat", ["--local"]),
        ("chat", ["hello"]),  # chat takes no argument: the full command's error
        ("chat", ["--agent"]),
        ("chat", ["-a", "one", "-a", "two"]),
        ("attach", ["one", "two"]),
        ("attach", ["--server=http://127.0.0.1:9", "--last"]),
        ("send", ["hi"]),
        # options that contradict each other: the full command says which
        ("chat", ["--session", "s_01", "--new"]),
        ("attach", ["--list", "s_01"]),
        ("attach", ["s_01", "--last"]),
        ("attach", ["--last", "--list"]),
    ],
)
def test_anything_else_goes_to_the_full_command(command: str, args: list[str]) -> None:
    assert parse_terminal_options(command, args) is None


@pytest.mark.parametrize(
    ("args", "lists_only"),
    [([], True), (["--list"], True), (["s_01"], False), (["--last"], False)],
)
def test_attach_without_a_session_only_lists(args: list[str], lists_only: bool) -> None:
    options = parse_terminal_options("attach", args)
    assert options is not None
    assert options.lists_only is lists_only
