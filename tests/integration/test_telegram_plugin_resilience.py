"""The Telegram plugin with what a bot meets beyond a plain DM: Telegram down behind its proxy,
a refused token, forum topics, anonymous admins, stickers, video notes, webhook bursts.

A real plugin subprocess against the fake Bot API, one process for the module (importing
aiogram costs seconds of CPU); each test talks in chats of its own. Tests needing a process of
their own are marked slow.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from duragent.plugins.telegram.plugin import TOKEN_ENV
from duragent.testing.fake_telegram import FakeTelegramBotAPI
from tests.integration.plugin_process import READY_WITHIN, PluginProcess, received_in, start_plugin_process
from tests.integration.test_telegram_plugin import OWNER, start_plugin, user

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fake_telegram() -> AsyncIterator[FakeTelegramBotAPI]:
    """One fake Bot API for the module."""
    async with FakeTelegramBotAPI() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def plugin(
    fake_telegram: FakeTelegramBotAPI, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PluginProcess]:
    """One plugin process in polling mode, connected to the fake; what fails is retried at once."""
    process, _ = await start_plugin(fake_telegram, tmp_path_factory.mktemp("plugin"), retry_backoff="50ms")
    yield process
    await process.stop()


_chat_ids = iter(range(7000, 1_000_000))


@pytest.fixture
def chat() -> int:
    """A chat id no other test in this module uses."""
    return next(_chat_ids)


async def test_polling_survives_an_html_error_page_instead_of_json(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    # What the proxy in front of the Bot API answers while Telegram is down.
    fake_telegram.fail_next("getUpdates", 502, description="Bad Gateway", html_page=True)
    await fake_telegram.wait_for_call("getUpdates", count=len(fake_telegram.calls_to("getUpdates")) + 1)
    fake_telegram.inject_message(chat_id=chat, text="still there?", from_user=user(chat))

    event = await plugin.event(received_in(str(chat)), within=15)

    assert event["content"]["text"] == "still there?"
    assert "getUpdates failed" in plugin.stderr_path.read_text()


async def test_a_forum_topic_is_a_chat_of_its_own_and_every_reply_lands_in_it(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    group, topic = -chat, 77
    fake_telegram.inject_message(
        group, "summarise the thread", from_user=OWNER, chat_type="supergroup", message_thread_id=topic
    )
    asked = await plugin.event(received_in(f"{group}:{topic}"))
    keyboard = {"rows": [[{"text": "Allow once", "callback_data": "approve:c1:allow_once"}]]}
    long_reply = "\n\n".join(f"Paragraph {n}: " + "word " * 80 for n in range(1, 14))

    sent = await plugin.request(
        {
            "type": "send_message",
            "chat_id": asked["chat_id"],
            "content": long_reply,
            "inline_keyboard": keyboard,
        }
    )
    await plugin.send({"type": "send_typing", "chat_id": asked["chat_id"], "duration": 5})
    fake_telegram.press_button(group, int(sent["message_id"]), "approve:c1:allow_once", from_user=OWNER)
    pressed = await plugin.event(
        lambda e: e["type"] == "callback_query" and e["data"].startswith("approve:c1")
    )
    [typing] = await fake_telegram.wait_for_call("sendChatAction")

    assert asked["routing"]["chat_id"] == f"{group}:{topic}"
    assert (asked["routing"]["thread_id"], asked["routing"]["parent_id"]) == (str(topic), str(group))
    assert asked.get("reply_to") is None  # not the topic's opening service message
    messages = fake_telegram.sent_messages(group)
    assert len(messages) == 2
    assert [m.message_thread_id for m in messages] == [topic, topic]
    assert pressed["chat_id"] == f"{group}:{topic}"
    assert typing.params["message_thread_id"] == str(topic)


async def test_a_reply_in_a_plain_group_is_still_reported_as_a_reply_to_the_bot(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    group = -chat
    fake_telegram.inject_message(group, "hello", from_user=OWNER, chat_type="supergroup")
    await plugin.event(received_in(str(group)))
    bot_said = await plugin.request({"type": "send_message", "chat_id": str(group), "content": "hi"})
    # Telegram marks a reply chain in a group that is not a forum with the root's id as its thread.
    replied = fake_telegram.inject_message(
        group, "thanks", from_user=OWNER, reply_to=int(bot_said["message_id"])
    )
    replied["message_thread_id"] = int(bot_said["message_id"])

    event = await plugin.event(received_in(str(group)))

    assert event["chat_id"] == str(group)
    assert event["reply_to"] == bot_said["message_id"]
    assert event["reply_to_bot"] is True


@pytest.mark.slow
async def test_a_token_telegram_refuses_fails_startup_naming_the_key_to_fix(
    fake_telegram: FakeTelegramBotAPI, tmp_path: Path
) -> None:
    config = {"bot_token": "123456789:revoked-long-ago", "api_base": fake_telegram.api_base}
    process = await start_plugin_process("duragent.plugins.telegram", config, tmp_path, drop_env=(TOKEN_ENV,))

    fatal = await process.event("error", within=READY_WITHIN)
    code = await process.stop()

    assert fatal["fatal"] is True
    assert "refused the bot token in `bot_token`" in fatal["message"]
    assert "@BotFather" in fatal["message"]
    assert "revoked-long-ago" not in fatal["message"]
    assert code == 1
    assert "Unclosed client session" not in process.stderr_path.read_text()


@pytest.mark.slow
async def test_telegram_out_of_reach_at_startup_is_reported_as_not_connected_to_be_waited_out(
    fake_telegram: FakeTelegramBotAPI, tmp_path: Path
) -> None:
    # The server booted before the network was up: nothing listens where the Bot API should be.
    config = {
        "bot_token": fake_telegram.token,
        "api_base": f"http://127.0.0.1:{free_port()}",
        "retry_backoff": "50ms",  # the 4 tries of getMe in a moment, not 7 s
    }
    process = await start_plugin_process("duragent.plugins.telegram", config, tmp_path, drop_env=(TOKEN_ENV,))

    fatal = await process.event("error", within=READY_WITHIN)
    code = await process.stop()

    assert fatal["fatal"] is True
    assert fatal["code"] == "not_connected"  # what Duragent retries for as long as it takes
    assert "cannot reach Telegram" in fatal["message"]
    assert fake_telegram.token not in fatal["message"]
    assert code == 1


async def test_a_video_note_is_downloaded_like_any_video(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    recording = b"\x00\x00\x00\x18ftypmp42 round video"
    fake_telegram.inject_video_note(chat, recording, from_user=user(chat))

    event = await plugin.event(received_in(str(chat)))

    assert event["content"] == {"type": "media", "media_type": "video"}
    assert event["metadata"]["mime_type"] == "video/mp4"
    assert await asyncio.to_thread(Path(event["metadata"]["file_path"]).read_bytes) == recording


async def test_an_anonymous_admin_speaks_as_the_group_not_as_telegrams_stand_in_bot(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    group = -chat
    stand_in = {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}
    fake_telegram.inject_message(group, "hello", from_user=OWNER, chat_type="supergroup")
    await plugin.event(received_in(str(group)))
    title = f"Test supergroup {group}"

    fake_telegram.inject_message(
        group,
        "announcement from the admins",
        from_user=stand_in,
        sender_chat={"id": group, "type": "supergroup", "title": title},
    )
    event = await plugin.event(received_in(str(group)))

    assert event["sender"] == {"id": str(group), "display_name": title}
    assert event["routing"]["sender_id"] == str(group)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_in_webhook_mode_a_question_does_not_overtake_the_photo_it_is_about(tmp_path: Path) -> None:
    port = free_port()
    async with FakeTelegramBotAPI() as telegram:
        process, _ = await start_plugin(
            telegram,
            tmp_path,
            mode="webhook",
            webhook_url=f"http://127.0.0.1:{port}/telegram/webhook",
            webhook_port=port,
        )
        try:
            photo = telegram.inject_photo(1001, b"\xff\xd8 jpeg", from_user=OWNER, caption="this one")
            question = telegram.inject_message(1001, "what is in the photo?", from_user=OWNER)
            elsewhere = telegram.inject_message(2002, "meanwhile", from_user={**OWNER, "id": 2002})
            first = await process.event(received_in("1001"))
            second = await process.event(received_in("1001"))
            other = await process.event(received_in("2002"))
        finally:
            await process.stop()

    in_order = [str(photo["message_id"]), str(question["message_id"])]
    assert [first["message_id"], second["message_id"]] == in_order
    assert first["metadata"]["size"] == len(b"\xff\xd8 jpeg")
    assert other["message_id"] == str(elsewhere["message_id"])


async def test_a_sticker_arrives_as_the_emoji_it_shows(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    fake_telegram.inject_sticker(chat, "👍", from_user=user(chat), set_name="HotCherry")
    fake_telegram.inject_sticker(chat, None, from_user=user(chat), set_name="HotCherry")

    thumbs_up = await plugin.event(received_in(str(chat)))
    no_emoji = await plugin.event(received_in(str(chat)))

    assert thumbs_up["content"] == {"type": "text", "text": "[sticker: 👍]"}
    assert no_emoji["content"] == {"type": "text", "text": "[sticker: HotCherry]"}


BROKEN_POLLING = """
from duragent.plugins.telegram.plugin import TelegramPlugin


class BrokenPolling(TelegramPlugin):
    async def _poll_forever(self, poll_timeout):
        raise RuntimeError("a bug nobody foresaw")


BrokenPolling().run()
"""


async def test_a_polling_loop_that_dies_unforeseen_stops_the_plugin_as_failed(
    fake_telegram: FakeTelegramBotAPI, tmp_path: Path
) -> None:
    """An error the loop does not expect ended it while the plugin ran on, deaf and reporting
    itself connected, and a stop it asked for exited 0, which `restart: on_failure` leaves be."""
    from duragent.gateways.protocol import ShutdownEvent
    from duragent.testing.plugin_process import PluginProcess as Plugin

    script = tmp_path / "broken_polling.py"
    script.write_text(BROKEN_POLLING)
    config = {"bot_token": fake_telegram.token, "api_base": fake_telegram.api_base, "poll_timeout": 1}
    async with await Plugin.start(sys.executable, str(script), config=config) as plugin:
        await plugin.wait_for(lambda event: isinstance(event, ShutdownEvent), within=READY_WITHIN)
        assert await plugin.wait_exit(within=30) == 1
    assert "polling Telegram stopped" in plugin.log
    assert "a bug nobody foresaw" in plugin.log


async def test_a_reply_sent_while_telegram_is_down_behind_its_proxy_still_arrives(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    # The agent's answer is only ever sent once: a 502 page must not lose it.
    fake_telegram.inject_message(chat_id=chat, text="hi", from_user=user(chat))
    await plugin.event(received_in(str(chat)), within=15)
    fake_telegram.fail_next("sendMessage", 502, description="Bad Gateway", html_page=True)

    answer = await plugin.request({"type": "send_message", "chat_id": str(chat), "content": "the answer"})

    assert answer["type"] == "command_ok"
    assert [m.text for m in fake_telegram.sent_messages(chat)] == ["the answer"]


async def test_a_reply_telegram_answers_with_a_server_error_is_sent_again(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    fake_telegram.inject_message(chat_id=chat, text="hi", from_user=user(chat))
    await plugin.event(received_in(str(chat)), within=15)
    fake_telegram.fail_next("sendMessage", 500, times=2)

    answer = await plugin.request({"type": "send_message", "chat_id": str(chat), "content": "the answer"})

    assert answer["type"] == "command_ok"
    assert [m.text for m in fake_telegram.sent_messages(chat)] == ["the answer"]


async def test_typing_held_by_flood_control_does_not_hold_back_the_reply(
    fake_telegram: FakeTelegramBotAPI, plugin: PluginProcess, chat: int
) -> None:
    # Typing shows for 5 s and the next turn sends it again: the chat's reply, queued behind it,
    # must not wait out a flood limit for it.
    fake_telegram.inject_message(chat_id=chat, text="hi", from_user=user(chat))
    await plugin.event(received_in(str(chat)), within=15)
    fake_telegram.fail_next("sendChatAction", 429, retry_after=30)
    await plugin.send({"type": "send_typing", "chat_id": str(chat), "duration": 5})

    answer = await plugin.request(
        {"type": "send_message", "chat_id": str(chat), "content": "the answer"}, within=60
    )

    [typing] = [c for c in fake_telegram.calls_to("sendChatAction") if c.params["chat_id"] == str(chat)]
    [sent] = [c for c in fake_telegram.calls_to("sendMessage") if c.params["chat_id"] == str(chat)]
    assert answer["type"] == "command_ok"
    assert sent.at - typing.at < 30
