"""What every command shares: global options, the loaded configuration, output helpers."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from duragent.config import DuragentConfig


@dataclass
class CliState:
    """Global options of one `duragent` invocation, and the configuration loaded on demand."""

    config_path: Path | None = None
    data_dir: Path | None = None
    verbosity: int = 0
    _config: DuragentConfig | None = field(default=None, repr=False)

    def setup_logging(self) -> None:
        """Log to stderr: warnings by default, info with -v, debug with -vv, errors with -q."""
        import logging

        level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(self.verbosity, logging.DEBUG)
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    def config(self) -> DuragentConfig:
        """duragent.yaml (or the defaults), loaded once; its warnings go to stderr.

        A gateway setting reading an unset variable is no error here: only a server uses it, and
        a service keeps its tokens in its own environment (`serve` requires them).
        """
        if self._config is None:
            from duragent.config import load_config

            self._config = load_config(
                self.workspace_config(), data_dir=self.data_dir, gateway_variables_later=True
            )
            if self.verbosity >= 0:
                for warning in self._config.warnings:
                    print(f"warning: {warning}", file=sys.stderr)
            import duragent.cli

            duragent.cli.config_read_here = True
        return self._config

    def workspace_config(self) -> Path | None:
        """--config / $DURAGENT_CONFIG, else the nearest duragent.yaml up from here (like git).

        None (the built-in defaults) only with an explicit --data-dir; otherwise no workspace is a
        NotAWorkspace error, so no command ever creates a data directory where none was asked for.
        """
        if self.config_path is not None:
            return self.config_path
        if os.environ.get("DURAGENT_CONFIG"):
            return Path(os.environ["DURAGENT_CONFIG"])
        from duragent.discovery import find_config, require_config

        return find_config() if self.data_dir is not None else require_config()


def print_json(value: Any) -> None:
    """Print `value` as indented JSON on stdout (dates and paths as strings; characters stdout's
    encoding lacks as `\\u` escapes, so the JSON stays whole in any locale)."""
    import json

    from duragent.cli.encoding import stdout_is_utf8

    print(json.dumps(value, indent=2, default=str, ensure_ascii=not stdout_is_utf8()))


def use_color() -> bool:
    """Colours only on a terminal, and never when NO_COLOR is set."""
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Aligned plain-text columns: readable on a terminal and easy to pipe into `awk`/`cut`
    (cells may hold names clients chose: their control characters are shown as escapes)."""
    from duragent.terminal_text import printable

    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


#: How much of a session's first message a row of a session table shows (`--json`: the 100
#: characters the store keeps).
FIRST_MESSAGE_SHOWN = 40


def check_agent_exists(state: CliState, agent: str, listed: str) -> None:
    """UsageError for `--agent` naming no agent folder, so a typo that matched none of the
    `listed` things (schedules, processes) is not read as "there are none"; those of an agent
    since removed are still listed by its name before this is asked."""
    from duragent.errors import UsageError

    agents = state.config().agents_path
    if not (agents / agent).is_dir():
        raise UsageError(f"--agent: no agent {agent!r} in {agents}, and no {listed} of one")


def run_async(coro: Any) -> Any:
    """Run a coroutine to completion from a synchronous command."""
    import asyncio

    return asyncio.run(coro)
