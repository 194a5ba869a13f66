"""`duragent-gateway-telegram`: the Telegram bot gateway (needs the `telegram` extra: aiogram 3).

Started by `duragent serve` from a `gateways.external` entry; see docs/gateways.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from duragent.plugins.entry import run_plugin

if TYPE_CHECKING:
    from duragent.gateways.sdk import GatewayPlugin


def main() -> None:
    """Console entry point: run the plugin on stdin/stdout (refuses an interactive terminal)."""
    run_plugin("telegram", {"bot_token": "TELEGRAM_BOT_TOKEN"}, "aiogram", _load)


def _load() -> type[GatewayPlugin]:
    from duragent.plugins.telegram.lazy_aiogram import import_aiogram

    import_aiogram()  # (first: the plugin's own imports would build every Telegram type)
    from duragent.plugins.telegram.plugin import TelegramPlugin

    return TelegramPlugin
