"""The fake Discord answers like Discord: REST errors, the Gateway handshake, and `python -m`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import discord
import pytest
import yarl
from discord.gateway import DiscordWebSocket, KeepAliveHandler
from discord.http import Route

from duragent.testing.fake_discord import DEFAULT_TOKEN, MESSAGE_LIMIT, FakeDiscord
from tests.integration.console_process import ConsoleProcess, dm_and_press
from tests.integration.plugin_process import start_ready_plugin
from tests.waiting import until


async def test_rest_refuses_a_wrong_token_and_oversized_or_empty_messages(fake_discord: FakeDiscord) -> None:
    guild = fake_discord.add_guild("Home")
    channel = fake_discord.add_channel(guild, "general")
    url = f"{fake_discord.api_base}/api/v10/channels/{channel}/messages"
    bot = {"Authorization": f"Bot {fake_discord.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"content": "hi"}, headers={"Authorization": "Bot nope"}) as wrong:
            assert wrong.status == 401
        async with http.post(url, json={"content": "x" * (MESSAGE_LIMIT + 1)}, headers=bot) as long:
            assert long.status == 400
            assert (await long.json())["code"] == 50035
        async with http.post(url, json={"content": ""}, headers=bot) as empty:
            assert empty.status == 400
        async with http.post(url, json={"content": "fits"}, headers=bot) as ok:
            assert ok.status == 200
            assert ok.headers["Content-Type"] == "application/json"
            assert ok.headers["X-RateLimit-Bucket"]

    assert [m.content for m in fake_discord.sent_messages(channel)] == ["fits"]


async def test_the_gateway_says_hello_checks_the_token_and_acks_heartbeats(fake_discord: FakeDiscord) -> None:
    fake_discord.add_guild("Home")
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(fake_discord.gateway_url) as socket:
            hello = await socket.receive_json()
            await socket.send_json({"op": 2, "d": {"token": fake_discord.token, "intents": 513}})
            ready = await socket.receive_json()
            guild = await socket.receive_json()
            await socket.send_json({"op": 1, "d": 2})
            ack = await socket.receive_json()
        async with http.ws_connect(fake_discord.gateway_url) as intruder:
            await intruder.receive_json()
            await intruder.send_json({"op": 2, "d": {"token": "stolen", "intents": 513}})
            closed = await intruder.receive()

    assert hello["op"] == 10
    assert hello["d"]["heartbeat_interval"] > 0
    assert (ready["t"], ready["s"]) == ("READY", 1)
    assert ready["d"]["user"]["id"] == fake_discord.application_id
    assert guild["t"] == "GUILD_CREATE"
    assert ack["op"] == 11
    assert closed.type == aiohttp.WSMsgType.CLOSE
    assert closed.data == 4004


async def test_a_heartbeat_before_identify_is_only_acknowledged_and_resume_replays_what_was_missed(
    fake_discord: FakeDiscord,
) -> None:
    guild = fake_discord.add_guild("Home")
    channel = fake_discord.add_channel(guild, "general")
    ada = fake_discord.add_user("ada")
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(fake_discord.gateway_url) as first:
            await first.receive_json()
            await first.send_json({"op": 2, "d": {"token": fake_discord.token, "intents": 513}})
            ready = await first.receive_json()
            await first.receive_json()  # GUILD_CREATE
        missed = fake_discord.inject_message(channel, "while you were away", author=ada)
        async with http.ws_connect(fake_discord.gateway_url) as second:
            await second.receive_json()
            # discord.py heartbeats at once after HELLO, before it resumes
            await second.send_json({"op": 1, "d": 2})
            after_heartbeat = await second.receive_json()
            connected_before_resume = fake_discord.connected
            resume = {"token": fake_discord.token, "session_id": ready["d"]["session_id"], "seq": 2}
            await second.send_json({"op": 6, "d": resume})
            replayed = await second.receive_json()
            resumed = await second.receive_json()

    assert after_heartbeat["op"] == 11
    assert connected_before_resume is False
    assert (replayed["t"], replayed["d"]["id"]) == ("MESSAGE_CREATE", missed["id"])
    assert resumed["t"] == "RESUMED"


async def test_discord_py_measures_a_heartbeat_round_trip_not_the_heartbeat_interval(
    fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ACK sent the instant the heartbeat lands can beat discord.py's keep-alive thread to noting
    the heartbeat sent: discord.py then took the whole interval for the latency and warned "Can't
    keep up, shard ID None websocket is 41.3s behind" once a heartbeat interval after connecting."""
    fake_discord.heartbeat_interval_ms = 250
    latencies: list[float] = []
    acknowledged = KeepAliveHandler.ack

    def ack(handler: KeepAliveHandler) -> None:
        acknowledged(handler)
        latencies.append(handler.latency)

    monkeypatch.setattr(KeepAliveHandler, "ack", ack)
    monkeypatch.setattr(Route, "BASE", f"{fake_discord.api_base}/api/v10")
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake_discord.gateway_url))
    client = discord.Client(intents=discord.Intents.default())
    await client.login(fake_discord.token)
    connection = asyncio.create_task(client.connect(reconnect=False))
    try:
        await until(lambda: len(latencies) >= 12, within=30)
    finally:
        await client.close()
        await connection

    assert max(latencies) < 0.2, latencies


async def test_python_m_serves_a_fake_discord_until_interrupted() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "duragent.testing.fake_discord", "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        api_base = first.split("api_base ")[1].split(",")[0]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{api_base}/api/v10/gateway/bot", headers={"Authorization": "Bot x"}) as response,
        ):
            refused = response.status
    finally:
        process.terminate()
        code = await process.wait()

    assert refused == 401
    assert code == 0
    assert first.startswith("fake Discord: api_base http://127.0.0.1:")


@pytest.mark.slow
async def test_python_m_with_user_lets_a_person_dm_the_real_plugin_and_press_its_buttons(
    tmp_path: Path,
) -> None:
    """`python -m duragent.testing.fake_discord --user ID`: what is typed reaches the Discord plugin
    (unmodified discord.py) as that user's direct message, the bot's messages are printed with
    their buttons numbered, `/press N` presses one and the answer only the presser sees is shown."""
    owner = "123456789012345678"
    console = await ConsoleProcess.start("duragent.testing.fake_discord", "--port", "0", "--user", owner)
    try:
        first = await console.printed_line("fake Discord: api_base")
        you = await console.printed_line("you are user")
        api_base = first.split("api_base ")[1].split(",")[0]
        settings = {"bot_token": DEFAULT_TOKEN, "api_base": api_base}
        plugin = await start_ready_plugin(
            "duragent.plugins.discord", settings, tmp_path, drop_env=("DISCORD_BOT_TOKEN",)
        )
        try:
            seen = await dm_and_press(console, plugin, "hello bot")
        finally:
            await plugin.stop()
    finally:
        code = await console.stop()

    assert f"--discord-owner {owner}" in you
    received, pressed = seen.received, seen.pressed
    assert received["content"] == {"type": "text", "text": "hello bot"}
    assert received["routing"]["chat_type"] == "dm"
    assert received["sender"]["id"] == received["routing"]["sender_id"] == owner
    assert "bot: May I run **ls**?\n" in console.printed
    assert "(/press N)" in seen.buttons
    assert pressed["data"] == "approve:c1:allow_once"
    assert pressed["sender"]["id"] == owner
    assert seen.answer == "bot (only you can see this): Running\n"
    assert code == 0
