"""What the Discord and Slack plugins report, and do, when the platform goes away and comes back.

`pong.connected` is what `duragent gateway list`, `/readyz` and the manager see: a bot that hears
nothing must not claim to be connected. Real plugin subprocesses against the fakes, which are
stopped (the platform unreachable) and started again on the same port.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
from pathlib import Path

import pytest

from duragent.config import ExternalGatewayConfig
from duragent.gateways.manager import GatewayManager, GatewayTiming
from duragent.gateways.protocol import Event
from duragent.testing.fake_discord import FakeDiscord
from duragent.testing.fake_slack import FakeSlack
from tests.integration.plugin_process import PluginProcess, received_in, start_ready_plugin
from tests.waiting import eventually, until

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
            try:
                # (the longest wait between attempts is a minute; an attempt itself takes a while
                # on a loaded machine)
                await eventually(lambda: _when(connected(plugin), True), within=120, every=0.2)
            except TimeoutError:
                said = plugin.stderr_path.read_text()[-4000:]
                raise AssertionError(
                    f"the bot did not come back within 120 s; its log ends:\n{said}"
                ) from None
            discord.inject_message(room, "are you back?", author=ada)
            event = await plugin.event(received_in(room), within=30)
        finally:
            code = await plugin.stop()

    assert event["content"]["text"] == "are you back?"
    assert code == 0
    # The waits between attempts are the plugin's (1 s doubling, within 20%), not discord.py's
    # draws from 0 to 2**n s, which after a short outage could keep the bot away for a minute.
    said = plugin.stderr_path.read_text()
    waits = [float(w) for w in re.findall(r"Discord out of reach \(.*\); reconnecting in ([\d.]+)s", said)]
    assert waits
    assert "Traceback" not in said  # (a line each attempt, not discord.py's 55)
    for attempt, wait in enumerate(waits):
        nominal = min(60, 2**attempt)
        assert 0.8 * nominal <= wait <= 1.2 * nominal


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


async def test_discord_a_reply_sent_while_discord_is_unreachable_for_a_moment_still_arrives(
    tmp_path: Path,
) -> None:
    async with FakeDiscord() as discord:
        room = discord.add_channel(discord.add_guild("Home"), "general")
        settings = {"bot_token": discord.token, "api_base": discord.api_base}
        plugin = await start_ready_plugin(
            "duragent.plugins.discord", settings, tmp_path, drop_env=("DISCORD_BOT_TOKEN",)
        )
        try:
            await discord.stop()
            answer = asyncio.create_task(
                plugin.request({"type": "send_message", "chat_id": room, "content": "still here"}, within=30)
            )
            await until(lambda: "retrying" in plugin.stderr_path.read_text(), within=15)
            await discord.start()  # back, on the same address
            reply = await answer
        finally:
            await plugin.stop()

    assert reply["type"] == "command_ok"
    assert [m.content for m in discord.sent_messages(room)] == ["still here"]


async def test_slack_a_reply_sent_while_slack_is_unreachable_for_a_moment_still_arrives(
    tmp_path: Path,
) -> None:
    async with FakeSlack() as slack:
        room = slack.add_channel("general")
        settings = {"bot_token": slack.bot_token, "app_token": slack.app_token, "api_base": slack.api_base}
        plugin = await start_ready_plugin(
            "duragent.plugins.slack", settings, tmp_path, drop_env=("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")
        )
        try:
            await slack.stop()
            answer = asyncio.create_task(
                plugin.request({"type": "send_message", "chat_id": room, "content": "still here"}, within=30)
            )
            await until(lambda: "chat.postMessage failed" in plugin.stderr_path.read_text(), within=15)
            await slack.start()  # back, on the same address
            reply = await answer
        finally:
            await plugin.stop()

    assert reply["type"] == "command_ok"
    assert [m.text for m in slack.sent_messages(room)] == ["still here"]


def supervised(name: str, config: dict[str, str], tmp_path: Path) -> GatewayManager:
    """The plugin `name` under Duragent's manager, restarted quickly, in a crash loop after 2 failures."""

    async def no_events(gateway: str, event: Event) -> None:
        return None

    spec = ExternalGatewayConfig(
        name=name,
        command=sys.executable,
        args=["-m", f"duragent.plugins.{name}"],
        config=config,
        restart="always",
    )
    quick = GatewayTiming(backoff_initial=0.05, backoff_max=0.2, crash_loop_failures=2)
    return GatewayManager([spec], no_events, base_dir=tmp_path, timing=quick)


async def test_discord_unreachable_at_startup_is_tried_again_until_it_is_back_not_given_up(
    tmp_path: Path,
) -> None:
    async with FakeDiscord() as discord:
        discord.add_guild("Home")
        await discord.stop()  # the server booted before the network was up
        manager = supervised("discord", {"bot_token": discord.token, "api_base": discord.api_base}, tmp_path)
        manager.start()
        plugin = manager.plugin("discord")
        try:
            await until(lambda: plugin.status.restarts >= 2 or plugin.status.state == "crash_loop", within=90)
            assert plugin.status.state != "crash_loop"
            assert "cannot reach Discord" in str(plugin.status.last_error)

            await discord.start()  # the network is up
            await until(lambda: plugin.status.state == "ready", within=90)
        finally:
            await manager.stop()


async def test_slack_unreachable_at_startup_is_tried_again_until_it_is_back_not_given_up(
    tmp_path: Path,
) -> None:
    async with FakeSlack() as slack:
        await slack.stop()  # the server booted before the network was up
        config = {"bot_token": slack.bot_token, "app_token": slack.app_token, "api_base": slack.api_base}
        # Each start tries auth.test 4 times: retried quickly, the same failures come in a second.
        manager = supervised("slack", {**config, "retry_backoff": "50ms"}, tmp_path)
        manager.start()
        plugin = manager.plugin("slack")
        try:
            await until(
                lambda: plugin.status.restarts >= 2 or plugin.status.state == "crash_loop", within=120
            )
            assert plugin.status.state != "crash_loop"
            assert "cannot reach Slack" in str(plugin.status.last_error)

            await slack.start()  # the network is up
            await until(lambda: plugin.status.state == "ready", within=90)
        finally:
            await manager.stop()
