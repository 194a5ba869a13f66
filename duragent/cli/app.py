"""The typer application: global options and every command group, registered in order."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer

from duragent import __version__
from duragent.cli import COMMAND_MODULES
from duragent.cli.context import CliState


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
