"""The `duragent` command: a thin typer shell over the library.

Only typer is imported at start (`--version` not even that); each command imports what it
needs when it runs, so `duragent --help` stays fast. Every command group lives in its own
module and registers itself through `register(app)`.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from duragent import __version__

if TYPE_CHECKING:
    import typer

#: Whether this command read duragent.yaml itself and said its warnings (`CliState.config`): the
#: fast paths do not, and say what the running server read instead (`sending.agent_name`).
config_read_here = False

#: Every command: name -> (module that registers it, the one line `--help` shows).
#: `duragent --help` lists these without importing the modules; a test checks that each module
#: registers exactly the commands listed here.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": (
        "duragent.cli.init",
        "Create duragent.yaml and .duragent/ with a first agent.",
    ),
    "agent": ("duragent.cli.agent", "List, inspect, validate and create agents."),
    "schema": ("duragent.cli.schema", "Print the JSON Schema of agent.yaml or duragent.yaml."),
    "doctor": (
        "duragent.cli.doctor",
        "Check configuration, data dir, git, agents, keys and endpoints.",
    ),
    "chat": ("duragent.cli.chat", "Talk to an agent."),
    "attach": ("duragent.cli.chat", "Reattach to a session: replay what this terminal missed, then go live."),
    "send": ("duragent.cli.chat", "Send one message and print the reply (for scripts and cron)."),
    "serve": ("duragent.cli.serve", "Run the HTTP REST + SSE server (or check on / stop a running one)."),
    "session": ("duragent.cli.session", "Inspect and manage stored sessions."),
    "schedule": ("duragent.cli.schedule", "Schedules: list, show, add, remove, run, pause, resume."),
    "memory": ("duragent.cli.memory", "Read, edit and search agents' memory."),
    "skill": ("duragent.cli.skill", "List, show, add and remove Agent Skills (SKILL.md folders)."),
    "history": (
        "duragent.cli.history",
        "What the agents (and people) changed, newest first.",
    ),
    "show": (
        "duragent.cli.revisions",
        "One change: who, when, why, and memory changes by section.",
    ),
    "diff": (
        "duragent.cli.revisions",
        "What changed between revisions (memory as added and removed bullets).",
    ),
    "revert": (
        "duragent.cli.revisions",
        "Undo a memory or agent-definition change with a new commit.",
    ),
    "gc": (
        "duragent.cli.revisions",
        "Compact the data repository and report its size.",
    ),
    "gateway": ("duragent.cli.gateway", "Gateway plugins of the running server."),
    "mcp": ("duragent.cli.mcp", "MCP servers: state and tools."),
    "process": ("duragent.cli.process", "Background processes the agents started: list, show, kill."),
    "ui": ("duragent.cli.ui", "Open the web dashboard in a browser, logged in."),
    "db": ("duragent.cli.db", "PostgreSQL schema of the services that use it: status and upgrade."),
    "migrate": (
        "duragent.cli.migrate",
        "Copy sessions and memory between filesystem and PostgreSQL.",
    ),
}

#: Command modules, each exposing `register(app)`.
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def build_app() -> typer.Typer:
    """The typer application with every command group registered."""
    from duragent.cli.app import build_app as build

    return build()


#: The top of `duragent --help` exactly as typer renders it (`duragent/cli/app.py`); a test
#: keeps the two identical.
_ROOT_HELP_HEAD = """\
Usage: duragent [OPTIONS] COMMAND [ARGS]...

  Duragent: durable AI agents whose whole state is files in git.

Options:
  -c, --config <path>  Configuration file (default: the nearest duragent.yaml,
                       here or in a parent folder).  [env var:
                       DURAGENT_CONFIG]
  --data-dir <path>    Data directory (overrides data_dir in the config).
  -v, --verbose        More logging (-vv for debug).  [default: 0]
  -q, --quiet          Only errors.
  --version            Show the version and exit.
  -h, --help           Show this message and exit.

Commands:
"""
#: Help text is laid out for at most this many columns (click's default), so on any terminal
#: at least this wide the text is the same.
_HELP_COLUMNS = 80


def root_help() -> str | None:
    """`duragent --help` as typer prints it, without importing typer (~45 ms instead of ~110 ms);
    None on a terminal narrower than the help's layout, where typer wraps to fit."""
    if _terminal_columns() < _HELP_COLUMNS:
        return None
    import textwrap

    width = _HELP_COLUMNS - 2  # click leaves two columns free
    name_column = max(len(name) for name in COMMANDS) + 2
    text_width = width - name_column - 2
    lines = []
    for name, (_, text) in COMMANDS.items():
        first, *rest = textwrap.wrap(text, text_width, replace_whitespace=False)
        lines.append(f"  {name.ljust(name_column)}{first}")
        lines += [" " * (2 + name_column) + line for line in rest]
    return _ROOT_HELP_HEAD + "\n".join(lines) + "\n"


def _terminal_columns() -> int:
    """The width click would use: $COLUMNS, else the terminal's, else 80 (as shutil does)."""
    import os

    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else _HELP_COLUMNS
    except (OSError, ValueError):
        return _HELP_COLUMNS


def _without_pydantic_plugin_loader() -> None:
    """With pydantic's plugins off, stand in for its plugin loader, which finds none anyway.

    The loader imports `importlib.metadata` (and with it `email`, `zipfile`, `csv`) when a
    command builds its first model, even when plugins are off: 9 ms of each start and 0.8 MiB
    of every server, for nothing. The stand-in answers `get_plugins()` as the loader does when
    `PYDANTIC_DISABLE_PLUGINS` turns them all off; with any other setting the loader is used.
    """
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") not in ("__all__", "1", "true"):
        return
    name = "pydantic.plugin._loader"
    if name in sys.modules:
        return
    import types

    loader = types.ModuleType(name, "Duragent's stand-in: pydantic's plugins are turned off.")
    loader.get_plugins = _no_plugins  # type: ignore[attr-defined]
    sys.modules[name] = loader


def _no_plugins() -> tuple[()]:
    return ()


def main() -> None:
    """Console-script entry point: run the app, turning Duragent errors into messages and exit codes."""
    if sys.argv[1:] == ["--version"]:
        # Answered before the command tree is built: scripts call this often.
        print(f"duragent {__version__}")
        return
    if sys.argv[1:] in (["--help"], ["-h"]) and (text := root_help()) is not None:
        # The first thing a newcomer types: answered without building the command tree.
        sys.stdout.write(text)
        return
    from duragent.cli.encoding import tolerate_unencodable_output
    from duragent.errors import DuragentError, error_text

    tolerate_unencodable_output()
    # pydantic looks for plugins in every installed package's entry points the first time it
    # builds a model: 10-40 ms of every command's start, for plugins Duragent never uses.
    # (PYDANTIC_DISABLE_PLUGINS= set to empty turns the lookup back on.)
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _without_pydantic_plugin_loader()
    try:
        code = _fast_path(sys.argv[1:])
        if code is not None:
            sys.exit(code)
        build_app()()
    except DuragentError as exc:
        print(error_text(exc), file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        # typer says "Aborted!" for the commands it runs; a fast path interrupted before its
        # own handling (a cold `send` while its server starts) says the same, not a traceback
        print("\nAborted!", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise
        # `duragent send --json ... | head`: the reader left. Exit as typer's commands do (1),
        # without a traceback, and send what is still buffered nowhere instead of failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end was closed (a broken pipe of another file,
    such as a socket, is an error worth its traceback)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        ready = poller.poll(0)
    except (AttributeError, OSError, ValueError):  # no poll() on this platform, or no stdout
        return False
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in ready)


def _fast_path(args: list[str]) -> int | None:
    """Answer `send`, `chat`/`attach` and `serve` without typer, pydantic or aiohttp when they
    can be (their exit status); None when the full command must run."""
    if args[:1] == ["send"]:
        # A warm `send` (or a cold one that starts the server itself)
        from duragent.cli.quick_send import quick_send

        return quick_send(args[1:])
    if args[:1] in (["chat"], ["attach"]):
        # Likewise `chat` and `attach` to their prompt
        from duragent.cli.quick_chat import quick_chat

        return quick_chat(args[0], args[1:])
    if "serve" in args:
        # The server's own start, without typer: what a cold `send` waits for
        from duragent.cli.quick_serve import quick_serve

        return quick_serve(args)
    return None
