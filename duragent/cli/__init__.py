"""The `duragent` command: a thin typer shell over the library.

Only typer is imported at start; each command imports what it needs when it runs, so
`duragent --help` stays fast. Every command group lives in its own module and registers
itself through `register(app)`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from duragent import __version__
from duragent.cli.context import CliState

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


def _version(value: bool) -> None:
    if value:
        print(f"duragent {__version__}")
        raise typer.Exit()


def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="DURAGENT_CONFIG",
            help="Configuration file.",
            show_default="./duragent.yaml",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data directory (overrides data_dir in the config).")
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv for debug).")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Duragent: durable AI agents whose whole state is files in git."""
    del version
    ctx.obj = CliState(config_path=config, data_dir=data_dir, verbosity=-1 if quiet else verbose)
    ctx.obj.setup_logging()


def build_app() -> typer.Typer:
    """The typer application with every command group registered."""
    app = typer.Typer(
        name="duragent",
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app)
    return app


def main() -> None:
    """Console-script entry point: run the app, turning Duragent errors into messages and exit codes."""
    from duragent.errors import DuragentError

    try:
        build_app()()
    except DuragentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
