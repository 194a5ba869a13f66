"""The fake Discord answers like Discord: REST errors, the Gateway handshake, and `python -m`."""

from __future__ import annotations

import asyncio
import sys

import aiohttp

from duragent.testing.fake_discord import MESSAGE_LIMIT, FakeDiscord


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
