"""The typer application: global options and every command group, registered in order."""

from __future__ import annotations

import importlib
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import typer.main
from typer.core import TyperGroup

from duragent import __version__
from duragent.cli import COMMANDS
from duragent.cli.context import CliState

if TYPE_CHECKING:
    # typer vendors click; its group's methods take these types.
    from typer._click.core import Command, Context
    from typer._click.formatting import HelpFormatter


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
            help="Configuration file (default: the nearest duragent.yaml, here or in a parent folder).",
            show_default=False,
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


class LazyCommands(TyperGroup):
    """The root group: lists commands from `COMMANDS` and imports a command's module only to run it.

    Building every command group costs more than importing typer; `duragent --help` needs none.
    """

    def list_commands(self, ctx: Context) -> list[str]:
        """Command names in `--help` order."""
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """The command, built from its module on first use."""
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        return module_commands(entry[0]).get(cmd_name)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        """The command `args` names; for a name that is none, the error says which it may be."""
        from typer._click.exceptions import UsageError

        try:
            return super().resolve_command(ctx, args)
        except UsageError as error:
            named = bool(args) and not args[0].startswith("-") and "Did you mean" not in error.message
            hint = did_you_mean(args[0]) if named else None
            if hint is not None:
                error.message = f"{error.message.rstrip('.')}. Did you mean {hint}?"
            raise

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The command list of `--help`, from the table (no module is imported)."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in COMMANDS.items()])


def did_you_mean(typed: str) -> str | None:
    """The commands a person who typed `typed` may have meant: a close spelling of a command
    (`sesion`), or a group's command of that name (`stop`: `duragent serve stop`)."""
    from difflib import get_close_matches

    close = get_close_matches(typed, list(COMMANDS))
    if close:
        return " or ".join(f"'{name}'" for name in close)
    # Only a mistyped command gets here: importing every command module is affordable.
    homes = [f"'duragent {name} {typed}'" for name in COMMANDS if typed in _subcommands(name)]
    return " or ".join(homes) or None


def _subcommands(name: str) -> Collection[str]:
    """The names of command group `name`'s commands (none if it is a plain command or its
    module cannot be imported here)."""
    try:
        command = module_commands(COMMANDS[name][0]).get(name)
    except ImportError:
        return ()
    return getattr(command, "commands", {}).keys()


def module_commands(module_name: str) -> dict[str, Command]:
    """The click commands a command module registers."""
    holder = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False, add_completion=False)
    holder.callback()(_no_op)
    importlib.import_module(module_name).register(holder)
    group = typer.main.get_command(holder)
    return dict(getattr(group, "commands", {}))


def _no_op() -> None:
    """A callback, so typer always builds a group from a module's commands."""


def build_app() -> typer.Typer:
    """The typer application; command modules load when their command runs."""
    app = typer.Typer(
        name="duragent",
        cls=LazyCommands,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    return app
