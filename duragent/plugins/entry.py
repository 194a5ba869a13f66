"""The console entry point the bundled gateway plugins share (`duragent-gateway-<name>`).

A plugin is started by `duragent serve` and talks over stdin/stdout; run from a terminal it
explains how to configure it instead, and a missing platform library names the extra to install.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from duragent.gateways.sdk import GatewayPlugin


def terminal_hint(name: str, settings: Mapping[str, str]) -> str:
    """What running the plugin in a terminal prints: the duragent.yaml entry that starts it.

    `settings` maps each config key to the environment variable holding its secret.
    """
    config = "".join(f"          {key}: ${{{variable}}}\n" for key, variable in settings.items())
    return (
        f"duragent-gateway-{name} is started by `duragent serve`, which talks to it over stdin/stdout.\n"
        f"Add it to duragent.yaml (or run `duragent init --{name}`):\n\n"
        "  gateways:\n    external:\n"
        f"      - name: {name}\n        command: duragent-gateway-{name}\n        config:\n{config}"
    )


def run_plugin(
    name: str,
    settings: Mapping[str, str],
    library: str,
    load: Callable[[], type[GatewayPlugin]],
) -> None:
    """Run the plugin `load()` returns on stdin/stdout; refuse an interactive terminal (exit 2).

    `library` names what `load` imports, for the message when the `name` extra is not installed.
    """
    if sys.stdin.isatty():
        sys.stderr.write(terminal_hint(name, settings))
        raise SystemExit(2)
    try:
        plugin = load()
    except ImportError as error:
        title = name.capitalize()
        sys.stderr.write(f"the {title} gateway needs {library}: pip install 'duragent[{name}]' ({error})\n")
        raise SystemExit(2) from None
    plugin().run()
