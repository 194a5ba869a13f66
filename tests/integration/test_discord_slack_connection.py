"""What the Discord and Slack plugins report, and do, when the platform goes away and comes back.

`pong.connected` is what `duragent gateway list`, `/readyz` and the manager see: a bot that hears
nothing must not claim to be connected. Real plugin subprocesses against the fakes, which are
stopped (the platform unreachable) and started again on the same port.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from duragent.testing.fake_discord import FakeDiscord
from tests.integration.plugin_process import PluginProcess, received_in, start_ready_plugin
from tests.waiting import eventually

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

_pings = itertools.count(1)


async def connected(plugin: PluginProcess) -> bool:
    """What the plugin answers a `ping` about the platform."""
    request_id = f"ping-{next(_pings)}"
    await plugin.send({"type": "ping", "request_id": request_id})
    pong = await plugin.event(lambda e: e["type"] == "pong" and e["request_id"] == request_id, within=10)
    return bool(pong["connected"])


async def test_discord_unreachable_is_reported_as_not_connected_until_the_bot_is_back(tmp_path: Path) -> None:
    async with FakeDiscord() as discord:
        guild = discord.add_guild("Home")
        room = discord.add_channel(guild, "general")
        ada = discord.add_user("ada")
        settings = {"bot_token": discord.token, "api_base": discord.api_base}
        plugin = await start_ready_plugin(
            "duragent.plugins.discord", settings, tmp_path, drop_env=("DISCORD_BOT_TOKEN",)
        )
        try:
            assert await connected(plugin)

            await discord.stop()  # Discord unreachable: the websocket drops, reconnects fail
            await eventually(lambda: _when(connected(plugin), False), within=30, every=0.2)

            await discord.start()  # back, on the same address
            await eventually(lambda: _when(connected(plugin), True), within=60, every=0.2)
            discord.inject_message(room, "are you back?", author=ada)
            event = await plugin.event(received_in(room), within=30)
        finally:
            code = await plugin.stop()

    assert event["content"]["text"] == "are you back?"
    assert code == 0


async def _when(answer: object, wanted: bool) -> bool | None:
    """True once the awaited `answer` is `wanted` (for `eventually`)."""
    return True if await answer == wanted else None  # type: ignore[misc]


async def test_discord_a_receive_loop_that_dies_stops_the_plugin_as_failed_so_it_is_restarted(
    tmp_path: Path,
) -> None:
    async with FakeDiscord() as discord:
        guild = discord.add_guild("Home")
        room = discord.add_channel(guild, "general")
        ada = discord.add_user("ada")
        settings = {"bot_token": discord.token, "api_base": discord.api_base}
        plugin = await start_ready_plugin(
            "duragent.plugins.discord", settings, tmp_path, drop_env=("DISCORD_BOT_TOKEN",)
        )
        try:
            # A dispatch discord.py cannot parse ends its receive loop with an exception.
            broken = {**discord.inject_message(room, "fine", author=ada), "id": "not-a-snowflake"}
            await plugin.event(received_in(room), within=30)
            discord._dispatch("MESSAGE_CREATE", broken)
            async with asyncio.timeout(30):
                code = await plugin.process.wait()
        finally:
            await plugin.stop()
        logs = plugin.stderr_path.read_text()

    assert code == 1
    assert "receiving from Discord stopped" in logs
