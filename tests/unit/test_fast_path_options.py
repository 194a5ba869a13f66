"""The fast paths of `send`, `chat`, `attach` and `serve` read the options their typer commands declare.

Each fast path parses its command line by hand (no typer, for start-up speed) and hands anything
it does not know to the full command. A typer option renamed, given another short name, turned
from a switch into one taking a value, or added, must not leave the hand parser reading it the
old way: these tests compare the parsers' tables with the parameters of the real typer app.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import pytest
import typer
import typer.main

from duragent.cli import quick_chat, quick_send, quick_serve
from duragent.cli.app import build_app
from duragent.cli.quick_chat import TerminalOptions
from duragent.cli.quick_send import SendOptions
from duragent.cli.quick_serve import ServeCommand
from duragent.cli.serving import ServeOptions


@dataclass(frozen=True)
class FastPath:
    """What one fast path reads of one command line: its options by name, and what it leaves."""

    command: str  # "" for the global options before the command
    module: str
    valued: Mapping[str, str]
    switches: Mapping[str, str]
    counted: Mapping[str, str] = field(default_factory=dict)
    #: Positional parameters it reads, in order.
    arguments: tuple[str, ...] = ()
    #: Typer parameters it deliberately leaves to the full command (an option of these hands over).
    handed_over: frozenset[str] = frozenset()
    #: Where its defaults are, by parameter name, to compare with typer's.
    defaults: Mapping[str, Any] = field(default_factory=dict)


def _defaults(options: Any) -> dict[str, Any]:
    if hasattr(options, "_field_defaults"):
        return dict(options._field_defaults)
    return {f.name: getattr(options(), f.name) for f in fields(options)}


FAST_PATHS = [
    FastPath(
        "send",
        "duragent/cli/quick_send.py",
        quick_send.VALUED_OPTIONS,
        quick_send.SWITCHES,
        arguments=("message",),
        handed_over=frozenset({"server"}),
        defaults=_defaults(SendOptions),
    ),
    *(
        FastPath(
            command,
            "duragent/cli/quick_chat.py",
            quick_chat.VALUED_OPTIONS[command],
            quick_chat.SWITCHES[command],
            arguments=arguments,
            handed_over=handed_over,
            defaults=_defaults(TerminalOptions),
        )
        for command, arguments, handed_over in [
            ("chat", (), frozenset({"server", "local"})),
            ("attach", ("session_id",), frozenset({"server"})),
        ]
    ),
    FastPath(
        "serve",
        "duragent/cli/quick_serve.py",
        quick_serve.VALUED_OPTIONS,
        quick_serve.SWITCHES,
        defaults=_defaults(ServeOptions),
    ),
    FastPath(
        "",
        "duragent/cli/quick_serve.py",
        quick_serve.GLOBAL_VALUED_OPTIONS,
        quick_serve.GLOBAL_SWITCHES,
        quick_serve.GLOBAL_COUNTED,
        handed_over=frozenset({"version"}),
        defaults=_defaults(ServeCommand),
    ),
]


@dataclass(frozen=True)
class Declared:
    """One option as a command line shows it: every name, and whether it takes a value or counts."""

    names: frozenset[str]
    kind: str  # "value", "switch" or "counted"


def typer_command(command: str) -> Any:
    """The click command the real typer app runs for `command` (the root group for "")."""
    root = typer.main.get_command(build_app())
    if not command:
        return root
    found = root.get_command(typer.Context(root), command)  # type: ignore[attr-defined]
    assert found is not None, f"the typer app has no command {command!r}"
    return found


def typer_options(command: Any) -> dict[str, Declared]:
    declared = {}
    for param in command.params:
        if param.param_type_name != "option":
            continue
        kind = "counted" if param.count else "switch" if param.is_flag else "value"
        assert param.nargs == 1, f"{param.name}: a hand parser reads one value"
        assert not param.multiple, f"{param.name}: a hand parser reads it once"
        declared[param.name] = Declared(frozenset(param.opts + param.secondary_opts), kind)
    return declared


def fast_path_options(path: FastPath) -> dict[str, Declared]:
    names: dict[str, dict[str, set[str]]] = {}
    for kind, table in (("value", path.valued), ("switch", path.switches), ("counted", path.counted)):
        for name, parameter in table.items():
            names.setdefault(parameter, {}).setdefault(kind, set()).add(name)
    read = {}
    for parameter, by_kind in names.items():
        assert len(by_kind) == 1, f"{path.module} reads {parameter} both as {' and '.join(by_kind)}"
        ((kind, spelled),) = by_kind.items()
        read[parameter] = Declared(frozenset(spelled), kind)
    return read


def differences(path: FastPath) -> Iterator[str]:
    """Each way the fast path and the typer command disagree, said for the person who changed one."""
    command = typer_command(path.command)
    declared, read = typer_options(command), fast_path_options(path)
    for parameter, option in declared.items():
        if parameter in path.handed_over:
            continue
        if parameter not in read:
            yield (
                f"typer declares {_names(option)} ({option.kind}), which {path.module} neither reads "
                "nor lists as handed over to the full command"
            )
        elif read[parameter].names != option.names:
            yield f"{parameter}: typer calls it {_names(option)}, {path.module} {_names(read[parameter])}"
        elif read[parameter].kind != option.kind:
            yield f"{_names(option)}: a {option.kind} in typer, a {read[parameter].kind} in {path.module}"
    for parameter, option in read.items():
        if parameter not in declared:
            yield f"{path.module} reads {_names(option)}, which typer does not declare"
    for parameter in path.handed_over - declared.keys():
        yield f"{parameter} is listed as handed over, but typer does not declare it"
    arguments = tuple(p.name for p in command.params if p.param_type_name == "argument")
    if arguments != path.arguments:
        yield f"typer's arguments are {arguments}, {path.module} reads {path.arguments}"


def _names(option: Declared) -> str:
    return "/".join(sorted(option.names, key=lambda name: (not name.startswith("--"), name)))


def _label(path: FastPath) -> str:
    return f"duragent {path.command}" if path.command else "duragent's global options (before serve)"


@pytest.mark.parametrize("path", FAST_PATHS, ids=lambda path: path.command or "global")
def test_each_fast_path_reads_the_options_its_typer_command_declares(path: FastPath) -> None:
    problems = list(differences(path))
    assert not problems, f"{_label(path)}: the fast path and typer differ:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", FAST_PATHS, ids=lambda path: path.command or "global")
def test_each_fast_path_defaults_as_its_typer_command_does(path: FastPath) -> None:
    command = typer_command(path.command)
    compared = {
        param.name: (param.default, path.defaults[param.name])
        for param in command.params
        if param.name in path.defaults and param.param_type_name == "option"
    }
    assert compared, f"{_label(path)}: no default to compare"
    differ = {name: pair for name, pair in compared.items() if pair[0] != pair[1]}
    assert not differ, f"{_label(path)}: defaults (typer, fast path) differ: {differ}"


def test_a_renamed_or_added_typer_option_is_named_in_the_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself: a drift on either side is reported with the option and the command."""
    send = next(path for path in FAST_PATHS if path.command == "send")
    renamed = {**send.valued, "--agent-name": "agent"}
    del renamed["--agent"]
    drifted = FastPath(
        "send", send.module, renamed, {**send.switches, "--quiet": "quiet"}, arguments=send.arguments
    )
    assert list(differences(drifted)) == [
        f"agent: typer calls it --agent/-a, {send.module} --agent-name/-a",
        f"typer declares --server (value), which {send.module} neither reads nor lists as handed over "
        "to the full command",
        f"{send.module} reads --quiet, which typer does not declare",
    ]
