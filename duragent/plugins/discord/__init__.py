"""`duragent-gateway-discord`: the Discord bot gateway (needs the `discord` extra: discord.py 2).

Started by `duragent serve` from a `gateways.external` entry; see docs/gateways.md.
"""

from __future__ import annotations

import sys

_TERMINAL_HINT = """\
duragent-gateway-discord is started by `duragent serve`, which talks to it over stdin/stdout.
Add it to duragent.yaml (or run `duragent init --discord`):

  gateways:
    external:
      - name: discord
        command: duragent-gateway-discord
        config:
          bot_token: ${DISCORD_BOT_TOKEN}
"""


def main() -> None:
    """Console entry point: run the plugin on stdin/stdout (refuses an interactive terminal)."""
    if sys.stdin.isatty():
        sys.stderr.write(_TERMINAL_HINT)
        raise SystemExit(2)
    try:
        from duragent.plugins.discord.plugin import DiscordPlugin
    except ImportError as error:
        sys.stderr.write(f"the Discord gateway needs discord.py: pip install 'duragent[discord]' ({error})\n")
        raise SystemExit(2) from None
    DiscordPlugin().run()
