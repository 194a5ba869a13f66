"""The Discord plugin as a real subprocess against the fake Discord (REST + Gateway websocket).

discord.py is unmodified: the plugin points it at the fake with `api_base` (the Gateway's URL
comes from `GET /gateway/bot`, as on Discord). One plugin process and one fake serve the module;
each test talks in channels of its own. Tests needing a process of their own are marked slow.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from duragent.testing.fake_discord import MESSAGE_LIMIT, FakeDiscord
from tests.integration.plugin_process import (
    READY_WITHIN,
    PluginProcess,
    received_in,
    start_plugin_process,
    start_ready_plugin,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def discord() -> AsyncIterator[FakeDiscord]:
    """One fake Discord for the module, with a guild the bot is in."""
    async with FakeDiscord() as server:
        server.add_guild("Home")
        yield server


async def start_plugin(discord: FakeDiscord, tmp_path: Path, **config: Any) -> PluginProcess:
    """The plugin, configured for the fake, once it announced `ready`."""
    settings = {"bot_token": discord.token, "api_base": discord.api_base, **config}
    return await start_ready_plugin(
        "duragent.plugins.discord", settings, tmp_path, drop_env=("DISCORD_BOT_TOKEN",)
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def plugin(
    discord: FakeDiscord, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PluginProcess]:
    """The shared plugin process."""
    process = await start_plugin(discord, tmp_path_factory.mktemp("discord-plugin"))
    yield process
    await process.stop()


_names = itertools.count(1)


@pytest.fixture
def guild(discord: FakeDiscord) -> str:
    """The module's guild."""
    return next(iter(discord._guilds))


@pytest.fixture
def channel(discord: FakeDiscord, guild: str) -> str:
    """A guild text channel no other test uses."""
    return discord.add_channel(guild, f"room-{next(_names)}")


@pytest.fixture
def ada(discord: FakeDiscord) -> dict[str, Any]:
    """A user of her own for the test."""
    return discord.add_user(f"ada{next(_names)}", "Ada Lovelace")


async def test_ready_announces_the_discord_gateway_and_its_capabilities(
    discord: FakeDiscord, tmp_path: Path
) -> None:
    process = await start_plugin_process(
        "duragent.plugins.discord",
        {"bot_token": discord.token, "api_base": discord.api_base},
        tmp_path,
    )
    ready = await process.event("ready", within=READY_WITHIN)
    await process.stop()
    warnings = [line for line in process.stderr_path.read_text().splitlines() if " WARNING " in line]

    assert ready["gateway"] == "discord"
    assert {"typing", "inline_keyboard", "edit", "delete", "media", "reply"} <= set(ready["capabilities"])
    assert warnings == []  # not "PyNaCl is not installed, voice will NOT be supported": no voice here


async def test_a_direct_message_becomes_message_received(
    discord: FakeDiscord, plugin: PluginProcess, ada: dict[str, Any]
) -> None:
    dm = discord.dm_channel(ada)
    sent = discord.inject_message(dm, "Hello **bot**", author=ada)

    event = await plugin.event(received_in(dm))

    assert event["message_id"] == sent["id"]
    assert event["content"] == {"type": "text", "text": "Hello **bot**"}
    assert event["sender"] == {"id": ada["id"], "username": ada["username"], "display_name": "Ada Lovelace"}
    assert event["routing"] == {
        "channel": "discord",
        "chat_type": "dm",
        "chat_id": dm,
        "sender_id": ada["id"],
    }
    assert event["mentions_bot"] is False


async def test_guild_messages_report_mentions_and_replies_to_the_bot(
    discord: FakeDiscord, plugin: PluginProcess, channel: str, guild: str, ada: dict[str, Any]
) -> None:
    discord.inject_message(channel, "just chatting", author=ada)
    plain = await plugin.event(received_in(channel))
    discord.inject_message(channel, f"{discord.mention} what time is it?", author=ada)
    mentioned = await plugin.event(received_in(channel))
    answer = await plugin.request({"type": "send_message", "chat_id": channel, "content": "noon"})
    discord.inject_message(channel, "thanks!", author=ada, reply_to=answer["message_id"])
    reply = await plugin.event(received_in(channel))

    assert plain["routing"]["chat_type"] == "group"
    assert plain["routing"]["guild_id"] == guild
    assert plain["mentions_bot"] is False
    assert mentioned["mentions_bot"] is True
    assert mentioned["content"]["text"] == "@duragent-test what time is it?"
    assert reply["reply_to_bot"] is True
    assert reply["reply_to"] == answer["message_id"]


async def test_a_command_after_the_bots_mention_or_naming_the_bot_arrives_as_a_command_to_it(
    discord: FakeDiscord, plugin: PluginProcess, channel: str, guild: str, ada: dict[str, Any]
) -> None:
    # The router answers text starting with "/" as a command, and takes `/reset@name` in a
    # group for another bot's unless `mentions_bot` says it is this one's.
    discord.inject_message(channel, f"{discord.mention} /reset", author=ada)
    after_mention = await plugin.event(received_in(channel))
    discord.inject_message(channel, f"{discord.role_mention(guild)}  /status please", author=ada)
    after_role = await plugin.event(received_in(channel))
    discord.inject_message(channel, "/reset@duragent-test", author=ada)
    named = await plugin.event(received_in(channel))
    discord.inject_message(channel, "/reset@otherbot", author=ada)
    other_bots = await plugin.event(received_in(channel))
    discord.inject_message(channel, f"{discord.mention} /etc/hosts holds what?", author=ada)
    path = await plugin.event(received_in(channel))

    assert after_mention["content"]["text"] == "/reset"
    assert after_mention["mentions_bot"] is True
    assert after_role["content"]["text"] == "/status please"
    assert after_role["mentions_bot"] is True
    assert named["content"]["text"] == "/reset@duragent-test"
    assert named["mentions_bot"] is True
    assert other_bots["mentions_bot"] is False
    assert path["content"]["text"] == "@duragent-test /etc/hosts holds what?"


async def test_channels_roles_and_custom_emoji_reach_the_agent_as_people_read_them(
    discord: FakeDiscord, plugin: PluginProcess, channel: str, guild: str, ada: dict[str, Any]
) -> None:
    general = discord.add_channel(guild, "general")
    helpers = discord.add_role(guild, "helpers")
    discord.inject_message(
        channel,
        f"see <#{general}>, ask <@&{helpers}> <:party:123456789012345678> <a:wave:223456789012345678>"
        f" with </deploy:323456789012345678>; typed: `<#{general}>` <#general> <:no colon>",
        author=ada,
    )

    event = await plugin.event(received_in(channel))

    assert event["content"]["text"] == (
        "see #general, ask @helpers :party: :wave: with /deploy;"
        f" typed: `<#{general}>` <#general> <:no colon>"
    )


async def test_a_thread_is_its_own_chat_routed_with_its_parent_channel(
    discord: FakeDiscord, plugin: PluginProcess, channel: str, ada: dict[str, Any]
) -> None:
    thread = discord.add_thread(channel, "planning")
    discord.inject_message(thread, f"{discord.mention} in the thread", author=ada)

    event = await plugin.event(received_in(thread))
    sent = await plugin.request({"type": "send_message", "chat_id": thread, "content": "answered here"})

    assert event["routing"]["thread_id"] == thread
    assert event["routing"]["parent_id"] == channel
    assert sent["type"] == "command_ok"
    assert [m.content for m in discord.sent_messages(thread)] == ["answered here"]


async def test_send_message_converts_markdown_and_replies_to_the_user(
    discord: FakeDiscord, plugin: PluginProcess, channel: str, ada: dict[str, Any]
) -> None:
    asked = discord.inject_message(channel, "a table please", author=ada)
    reply = (
        "**Totals**\n\n| item | n |\n|---|---|\n| apples | 3 |\n\n#### Note\n\n![chart](http://x.test/c.png)"
    )

    answer = await plugin.request(
        {"type": "send_message", "chat_id": channel, "content": reply, "reply_to": asked["id"]}
    )

    [sent] = discord.sent_messages(channel)
    assert answer == {"type": "command_ok", "request_id": answer["request_id"], "message_id": sent.id}
    assert sent.reference_id == asked["id"]
    assert sent.content == (
        "**Totals**\n\n```\nitem   | n\n-------+--\napples | 3\n```\n\n**Note**\n\n[chart](http://x.test/c.png)"
    )


async def test_a_heading_table_or_rule_rewritten_inside_a_quote_or_list_stays_in_it(
    discord: FakeDiscord, plugin: PluginProcess, channel: str
) -> None:
    reply = "> #### Note\n> | a | b |\n> |---|---|\n> | 1 | 2 |\n\n- first\n\n  ---\n  still first"

    await plugin.request({"type": "send_message", "chat_id": channel, "content": reply})

    [sent] = discord.sent_messages(channel)
    assert sent.content == (
        "> **Note**\n> ```\n> a | b\n> --+--\n> 1 | 2\n> ```\n\n- first\n\n  ──────────\n  still first"
    )


async def test_a_long_reply_arrives_in_ordered_pieces_within_2000_characters(
    discord: FakeDiscord, plugin: PluginProcess, channel: str
) -> None:
    essay = "\n\n".join(f"Paragraph {n}: " + "lorem ipsum " * 30 for n in range(1, 12))
    keyboard = {"rows": [[{"text": "OK", "callback_data": "ok"}]]}

    answer = await plugin.request(
        {"type": "send_message", "chat_id": channel, "content": essay, "inline_keyboard": keyboard}
    )

    pieces = discord.sent_messages(channel)
    assert len(pieces) >= 3
    assert all(len(piece.content) <= MESSAGE_LIMIT for piece in pieces)
    assert " ".join(piece.content for piece in pieces).split() == essay.split()
    assert all(piece.content.startswith("Paragraph") for piece in pieces)
    assert [bool(piece.buttons) for piece in pieces] == [False] * (len(pieces) - 1) + [True]
    assert answer["message_id"] == pieces[-1].id


async def test_a_429_from_discord_is_waited_out_and_the_message_still_sent(
    discord: FakeDiscord, plugin: PluginProcess, channel: str
) -> None:
    discord.fail_next("POST /channels/{channel_id}/messages", 429, retry_after=0.3)

    answer = await plugin.request({"type": "send_message", "chat_id": channel, "content": "patience"})

    assert answer["type"] == "command_ok"
    assert [m.content for m in discord.sent_messages(channel)] == ["patience"]
    attempts = [c for c in discord.calls_to("POST /channels/{channel_id}/messages") if channel in c.path]
    assert len(attempts) == 2
    assert attempts[1].at - attempts[0].at >= 0.25


async def test_a_reply_piece_discord_fails_with_a_server_error_is_sent_again_once(
    discord: FakeDiscord, plugin: PluginProcess, channel: str
) -> None:
    essay = "\n\n".join(f"Paragraph {n}: " + "lorem ipsum " * 30 for n in range(1, 8))
    discord.fail_next("POST /channels/{channel_id}/messages", 503, times=2)

    answer = await plugin.request({"type": "send_message", "chat_id": channel, "content": essay}, within=30)

    assert answer["type"] == "command_ok"
    pieces = discord.sent_messages(channel)
    assert len(pieces) >= 2
    assert " ".join(piece.content for piece in pieces).split() == essay.split()
    attempts = [c for c in discord.calls_to("POST /channels/{channel_id}/messages") if channel in c.path]
    assert len(attempts) == len(pieces) + 2


async def test_sending_to_an_unknown_channel_answers_command_error(plugin: PluginProcess) -> None:
    answer = await plugin.request({"type": "send_message", "chat_id": "123456789", "content": "hello?"})

    assert answer["type"] == "command_error"
    assert answer["code"] == "chat_not_found"


async def test_a_pressed_button_is_acknowledged_forwarded_and_answered_only_to_the_presser(
    discord: FakeDiscord, plugin: PluginProcess, channel: str, ada: dict[str, Any]
) -> None:
    keyboard = {"rows": [[{"text": "Allow once", "callback_data": "approve:c1:allow_once"}]]}
    sent = await plugin.request(
        {"type": "send_message", "chat_id": channel, "content": "May I?", "inline_keyboard": keyboard}
    )
    [prompt] = discord.sent_messages(channel)
    assert [b["label"] for b in prompt.buttons] == ["Allow once"]

    pressed = discord.press_button(sent["message_id"], prompt.buttons[0]["custom_id"], ada)
    query = await plugin.event("callback_query")
    answered = await plugin.request(
        {
            "type": "answer_callback_query",
            "callback_query_id": query["callback_query_id"],
            "text": "✓ Running",
        }
    )
    toast = await discord.wait_for_response(pressed["id"], lambda m: m.content == "✓ Running")

    assert query["data"] == "approve:c1:allow_once"
    assert query["chat_id"] == channel
    assert query["message_id"] == sent["message_id"]
    assert query["sender"]["id"] == ada["id"]
    assert answered["type"] == "command_ok"
    assert toast.ephemeral


async def test_an_attachment_is_downloaded_and_its_text_passed_on_as_caption(
    discord: FakeDiscord, plugin: PluginProcess, channel: str, ada: dict[str, Any]
) -> None:
    data = b"%PDF-1.4 fake invoice"
    discord.inject_message(
        channel, "the invoice", author=ada, attachments=[("invoice.pdf", data, "application/pdf")]
    )

    event = await plugin.event(received_in(channel))

    assert event["content"] == {"type": "media", "media_type": "document", "caption": "the invoice"}
    metadata = event["metadata"]
    assert metadata["file_name"] == "invoice.pdf"
    assert metadata["mime_type"] == "application/pdf"
    assert await asyncio.to_thread(Path(metadata["file_path"]).read_bytes) == data


async def test_a_sticker_is_named_and_a_message_with_nothing_to_read_is_not_forwarded(
    discord: FakeDiscord, plugin: PluginProcess, channel: str, ada: dict[str, Any]
) -> None:
    discord.inject_message(channel, "", author=ada, stickers=["Wave"])
    discord.inject_message(channel, "", author=ada)
    discord.inject_message(channel, "after the empty one", author=ada)

    sticker = await plugin.event(received_in(channel))
    after = await plugin.event(received_in(channel))

    assert sticker["content"] == {"type": "text", "text": "[sticker: Wave]"}
    assert after["content"]["text"] == "after the empty one"


async def test_media_edit_delete_and_typing_reach_discord(
    discord: FakeDiscord, plugin: PluginProcess, channel: str
) -> None:
    picture = base64.b64encode(b"\x89PNG fake").decode()
    media = await plugin.request(
        {
            "type": "send_media",
            "chat_id": channel,
            "media": {"source": "base64", "data": picture, "mime_type": "image/png", "filename": "chart.png"},
            "caption": "the **chart**",
        }
    )
    text = await plugin.request({"type": "send_message", "chat_id": channel, "content": "draft"})
    await plugin.request(
        {"type": "edit_message", "chat_id": channel, "message_id": text["message_id"], "content": "final"}
    )
    await plugin.request({"type": "delete_message", "chat_id": channel, "message_id": media["message_id"]})
    await plugin.send({"type": "send_typing", "chat_id": channel})
    await discord.wait_until(lambda: channel in discord.typing or None)

    sent_media, sent_text = discord.sent_messages(channel)
    assert sent_media.files == [("chart.png", b"\x89PNG fake")]
    assert sent_media.content == "the **chart**"
    assert sent_media.deleted
    assert sent_text.content == "final"
    assert sent_text.edits == ["final"]


@pytest.mark.slow
async def test_a_dropped_gateway_connection_is_resumed_and_missed_messages_arrive(
    tmp_path: Path, ada: dict[str, Any]
) -> None:
    async with FakeDiscord() as own:
        guild = own.add_guild("Away")
        room = own.add_channel(guild, "general")
        process = await start_plugin(own, tmp_path)
        try:
            await own.disconnect(4000)
            own.inject_message(room, "sent while you were away", author=ada)
            event = await process.event(received_in(room), within=30)
            await own.wait_until(lambda: own.connected or None, within=30)
        finally:
            code = await process.stop()
        logs = process.stderr_path.read_text()

    assert event["content"]["text"] == "sent while you were away"
    assert own.identifies == 1
    assert own.resumes == 1
    assert code == 0
    assert own.token not in logs


@pytest.mark.slow
async def test_a_missing_token_fails_startup_with_a_fatal_error(discord: FakeDiscord, tmp_path: Path) -> None:
    process = await start_plugin_process(
        "duragent.plugins.discord", {"api_base": discord.api_base}, tmp_path, drop_env=("DISCORD_BOT_TOKEN",)
    )
    fatal = await process.event("error", within=READY_WITHIN)
    code = await process.stop()

    assert fatal["fatal"] is True
    assert "DISCORD_BOT_TOKEN" in fatal["message"]
    assert code == 1


@pytest.mark.slow
async def test_a_misspelt_config_key_fails_startup_naming_it(discord: FakeDiscord, tmp_path: Path) -> None:
    config = {"bot_token": discord.token, "api_base": discord.api_base, "download_dri": str(tmp_path)}
    process = await start_plugin_process("duragent.plugins.discord", config, tmp_path)
    fatal = await process.event("error", within=READY_WITHIN)
    code = await process.stop()

    assert fatal["fatal"] is True
    assert "unknown key `download_dri`" in fatal["message"]
    assert "did you mean `download_dir`?" in fatal["message"]
    assert code == 1


@pytest.mark.slow
async def test_a_wrong_token_is_refused_without_printing_it(discord: FakeDiscord, tmp_path: Path) -> None:
    wrong = "MTIz.wrong-discord.token-value"
    process = await start_plugin_process(
        "duragent.plugins.discord", {"api_base": discord.api_base, "bot_token": wrong}, tmp_path
    )
    fatal = await process.event("error", within=READY_WITHIN)
    await process.stop()
    errors = [line for line in process.stderr_path.read_text().splitlines() if " ERROR " in line]

    assert "refused the bot token" in fatal["message"]
    assert wrong not in process.stderr_path.read_text()
    # The error event says what is wrong (the host logs it); no copy of it on stderr, nor
    # aiohttp's "Unclosed client session".
    assert errors == []
