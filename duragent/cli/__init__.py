"""The `duragent` command: a thin typer shell over the library.

Only typer is imported at start (`--version` not even that); each command imports what it
needs when it runs, so `duragent --help` stays fast. Every command group lives in its own
module and registers itself through `register(app)`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from duragent import __version__

if TYPE_CHECKING:
    import typer

#: Command modules, in the order their commands appear in `--help`.
COMMAND_MODULES = (
    "duragent.cli.init",
    "duragent.cli.agent",
    "duragent.cli.schema",
    "duragent.cli.doctor",
    "duragent.cli.session",
    "duragent.cli.history",
    "duragent.cli.memory",
    "duragent.cli.revisions",
    "duragent.cli.db",
    "duragent.cli.migrate",
    "duragent.cli.serve",
    "duragent.cli.gateway",
    "duragent.cli.chat",
)


def build_app() -> typer.Typer:
    """The typer application with every command group registered."""
    from duragent.cli.app import build_app as build

    return build()


def main() -> None:
    """Console-script entry point: run the app, turning Duragent errors into messages and exit codes."""
    if sys.argv[1:] == ["--version"]:
        # Answered before the command tree is built: scripts call this often.
        print(f"duragent {__version__}")
        return
    from duragent.errors import DuragentError

    try:
        build_app()()
    except DuragentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
