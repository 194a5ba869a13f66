"""`duragent-gateway-slack`: the Slack bot gateway (needs the `slack` extra: slack-bolt).

Started by `duragent serve` from a `gateways.external` entry; see docs/gateways.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from duragent.plugins.entry import run_plugin

if TYPE_CHECKING:
    from duragent.gateways.sdk import GatewayPlugin


def main() -> None:
    """Console entry point: run the plugin on stdin/stdout (refuses an interactive terminal)."""
    run_plugin("slack", {"bot_token": "SLACK_BOT_TOKEN", "app_token": "SLACK_APP_TOKEN"}, "slack-bolt", _load)


def _load() -> type[GatewayPlugin]:
    from duragent.plugins.slack.plugin import SlackPlugin

    return SlackPlugin
