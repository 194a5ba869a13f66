"""`duragent serve` started without typer.

typer builds the command tree and its pydantic-based option converters before a command runs:
~0.1 s of CPU for a server whose whole start should take a few tenths, and a cold `send` waits
for that start. This path reads the global options and `serve`'s own in their plain forms and
runs the very same start (`duragent.cli.serving`). Anything else (`--help`, `serve status`, an
unknown option, a value out of range) returns None, and typer parses it with its usual messages.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from duragent.cli.serving import ServeOptions

_MAX_PORT = 65535
#: The options this path reads, by every name they go by, to the parameter they set: the global
#: ones before `serve`, then `serve`'s own. Any other goes to typer; a test ties these tables to
#: the typer commands'.
GLOBAL_VALUED_OPTIONS = {"--config": "config", "-c": "config", "--data-dir": "data_dir"}
GLOBAL_SWITCHES = {"--quiet": "quiet", "-q": "quiet"}
#: Counted: `-vv` is `-v -v`.
GLOBAL_COUNTED = {"--verbose": "verbose", "-v": "verbose"}
VALUED_OPTIONS = {
    "--host": "host",
    "--port": "port",
    "-p": "port",
    "--agents-dir": "agents_dir",
    "--grace": "grace",
    "--ready-fd": "ready_fd",
}
SWITCHES = {"--insecure": "insecure", "--auto": "auto"}


@dataclass(frozen=True)
class ServeCommand:
    """A `duragent [global options] serve [options]` command line, read."""

    config_path: Path | None = None
    data_dir: Path | None = None
    verbosity: int = 0
    options: ServeOptions = field(default_factory=ServeOptions)


def quick_serve(args: list[str]) -> int | None:
    """Run the server for `args` (the command line after `duragent`); None when typer must parse them."""
    command = parse_serve_command(args)
    if command is None:
        return None
    from duragent.cli.context import CliState
    from duragent.cli.serving import serve_workspace
    from duragent.errors import DuragentError, error_text

    state = CliState(config_path=command.config_path, data_dir=command.data_dir, verbosity=command.verbosity)
    state.setup_logging()
    try:
        serve_workspace(state, command.options)
    except DuragentError as exc:
        print(error_text(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Aborted!", file=sys.stderr)  # as typer says it
        return 1
    return 0


def parse_serve_command(args: list[str]) -> ServeCommand | None:
    """The command line when it is a plain `serve`, else None.

    Without `--config`, `CliState` reads `$DURAGENT_CONFIG` as typer would have.
    """
    rest = _split_equals(args)
    paths: dict[str, Path] = {}
    verbosity = 0
    quiet = False
    while rest and rest[0] != "serve":
        arg = rest.pop(0)
        if arg in GLOBAL_VALUED_OPTIONS:
            if not rest or not rest[0]:
                return None
            paths[GLOBAL_VALUED_OPTIONS[arg]] = Path(rest.pop(0))
        elif arg in GLOBAL_COUNTED or (arg[:2] in GLOBAL_COUNTED and set(arg[1:]) == {arg[1]}):
            verbosity += 1 if arg.startswith("--") else len(arg) - 1
        elif arg in GLOBAL_SWITCHES:
            quiet = True
        else:
            return None
    if not rest:
        return None
    options = _parse_serve_options(rest[1:])
    if options is None:
        return None
    return ServeCommand(paths.get("config"), paths.get("data_dir"), -1 if quiet else verbosity, options)


def _parse_serve_options(args: list[str]) -> ServeOptions | None:
    values: dict[str, str] = {}
    flags: set[str] = set()
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in VALUED_OPTIONS:
            if not rest or VALUED_OPTIONS[arg] in values:
                return None
            values[VALUED_OPTIONS[arg]] = rest.pop(0)
        elif arg in SWITCHES:
            flags.add(SWITCHES[arg])
        else:
            return None  # `status`, `stop`, `--help`, anything typer should explain
    port = _whole_number(values.get("port"), 0, _MAX_PORT)
    ready_fd = _whole_number(values.get("ready_fd"), 0, None)
    grace = _seconds(values.get("grace"))
    if (port is None) != ("port" not in values) or (ready_fd is None) != ("ready_fd" not in values):
        return None
    if grace is None or not values.get("host", "-") or not values.get("agents_dir", "-"):
        return None
    agents_dir = values.get("agents_dir")
    return ServeOptions(
        host=values.get("host"),
        port=port,
        agents_dir=Path(agents_dir) if agents_dir is not None else None,
        insecure="insecure" in flags,
        grace=grace,
        auto="auto" in flags,
        ready_fd=ready_fd,
    )


def _split_equals(args: list[str]) -> list[str]:
    """`--name=value` as `--name value` (the long options of this path all take a value that way)."""
    split: list[str] = []
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            split += arg.split("=", 1)
        else:
            split.append(arg)
    return split


def _whole_number(text: str | None, low: int, high: int | None) -> int | None:
    if text is None or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value >= low and (high is None or value <= high) else None


def _seconds(text: str | None) -> float | None:
    from duragent.cli.serving import DEFAULT_GRACE

    if text is None:
        return DEFAULT_GRACE
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
