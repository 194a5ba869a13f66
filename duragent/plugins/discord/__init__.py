"""`duragent-gateway-discord`: the Discord bot gateway (needs the `discord` extra: discord.py 2).

Started by `duragent serve` from a `gateways.external` entry; see docs/gateways.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from duragent.plugins.entry import run_plugin

if TYPE_CHECKING:
    from duragent.gateways.sdk import GatewayPlugin


def main() -> None:
    """Console entry point: run the plugin on stdin/stdout (refuses an interactive terminal)."""
    run_plugin("discord", {"bot_token": "DISCORD_BOT_TOKEN"}, "discord.py", _load)


def _load() -> type[GatewayPlugin]:
    from duragent.plugins.discord.plugin import DiscordPlugin

    return DiscordPlugin
