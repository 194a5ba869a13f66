"""`duragent-gateway-telegram`: the Telegram bot gateway (needs the `telegram` extra: aiogram 3).

Started by `duragent serve` from a `gateways.external` entry; see docs/gateways.md.
"""

from __future__ import annotations

import sys

_TERMINAL_HINT = """\
duragent-gateway-telegram is started by `duragent serve`, which talks to it over stdin/stdout.
Add it to duragent.yaml (or run `duragent init --telegram`):

  gateways:
    external:
      - name: telegram
        command: duragent-gateway-telegram
        config:
          bot_token: ${TELEGRAM_BOT_TOKEN}
"""


def main() -> None:
    """Console entry point: run the plugin on stdin/stdout (refuses an interactive terminal)."""
    if sys.stdin.isatty():
        sys.stderr.write(_TERMINAL_HINT)
        raise SystemExit(2)
    try:
        from duragent.plugins.telegram.plugin import TelegramPlugin
    except ImportError as error:
        sys.stderr.write(f"the Telegram gateway needs aiogram: pip install 'duragent[telegram]' ({error})\n")
        raise SystemExit(2) from None
    TelegramPlugin().run()
