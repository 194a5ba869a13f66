"""`duragent-gateway-slack`: the Slack bot gateway (needs the `slack` extra: slack-bolt).

Started by `duragent serve` from a `gateways.external` entry; see docs/gateways.md.
"""

from __future__ import annotations

import sys

_TERMINAL_HINT = """\
duragent-gateway-slack is started by `duragent serve`, which talks to it over stdin/stdout.
Add it to duragent.yaml (or run `duragent init --slack`):

  gateways:
    external:
      - name: slack
        command: duragent-gateway-slack
        config:
          bot_token: ${SLACK_BOT_TOKEN}
          app_token: ${SLACK_APP_TOKEN}
"""


def main() -> None:
    """Console entry point: run the plugin on stdin/stdout (refuses an interactive terminal)."""
    if sys.stdin.isatty():
        sys.stderr.write(_TERMINAL_HINT)
        raise SystemExit(2)
    try:
        from duragent.plugins.slack.plugin import SlackPlugin
    except ImportError as error:
        sys.stderr.write(f"the Slack gateway needs slack-bolt: pip install 'duragent[slack]' ({error})\n")
        raise SystemExit(2) from None
    SlackPlugin().run()
