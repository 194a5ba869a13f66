"""The Slack plugin as a real subprocess against the fake Slack (Web API + Socket Mode).

slack-bolt and slack_sdk are unmodified: the plugin points the Web API client at the fake with
`api_base`, and `apps.connections.open` answers a ws:// URL of the fake. One plugin process and
one fake serve the module; each test talks in channels of its own. Tests needing a process of
their own are marked slow.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from duragent.testing.fake_slack import SECTION_TEXT_LIMIT, FakeSlack
from tests.integration.plugin_process import (
    READY_WITHIN,
    PluginProcess,
    received_in,
    start_plugin_process,
    start_ready_plugin,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def slack() -> AsyncIterator[FakeSlack]:
    """One fake Slack for the module."""
    async with FakeSlack() as server:
        yield server


async def start_plugin(slack: FakeSlack, tmp_path: Path, **config: Any) -> PluginProcess:
    """The plugin, configured for the fake, once it announced `ready`."""
    settings = {
        "bot_token": slack.bot_token,
        "app_token": slack.app_token,
        "api_base": slack.api_base,
        **config,
    }
    drop = ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET")
    return await start_ready_plugin("duragent.plugins.slack", settings, tmp_path, drop_env=drop)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def plugin(slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PluginProcess]:
    """The shared plugin process (Socket Mode); a call that failed on the way is retried at once."""
    process = await start_plugin(slack, tmp_path_factory.mktemp("slack-plugin"), retry_backoff="50ms")
    yield process
    await process.stop()


@pytest.fixture
def channel(slack: FakeSlack) -> str:
    """A channel no other test uses."""
    return slack.add_channel("room")


@pytest.fixture
def ada(slack: FakeSlack) -> dict[str, Any]:
    """A member of her own for the test."""
    return slack.add_user("ada", "Ada Lovelace")


async def test_a_direct_message_becomes_message_received_and_the_envelope_is_acknowledged(
    slack: FakeSlack, plugin: PluginProcess, ada: dict[str, Any]
) -> None:
    dm = slack.dm_channel(ada)
    sent = slack.inject_message(dm, "Hello *bot* &lt;3", user=ada)

    event = await plugin.event(received_in(dm))
    await slack.wait_until(lambda: slack.unacked == 0 or None)

    assert event["message_id"] == sent["ts"]
    assert event["content"] == {"type": "text", "text": "Hello *bot* <3"}
    assert event["sender"] == {"id": ada["id"], "display_name": "Ada Lovelace"}
    assert event["routing"]["chat_type"] == "dm"
    assert event["routing"]["sender_id"] == ada["id"]
    assert event["mentions_bot"] is False


async def test_people_mentioned_in_a_message_reach_the_agent_by_name(
    slack: FakeSlack, plugin: PluginProcess, channel: str, ada: dict[str, Any]
) -> None:
    bea = slack.add_user("bea", "Bea Smith")
    slack.inject_message(channel, f"{slack.mention} ask <@{bea['id']}> what <@{bea['id']}> thinks", user=ada)

    event = await plugin.event(received_in(channel))

    assert event["content"]["text"] == "@duragent ask @Bea Smith what @Bea Smith thinks"


async def test_channels_links_and_group_mentions_reach_the_agent_as_people_read_them(
    slack: FakeSlack, plugin: PluginProcess, channel: str, ada: dict[str, Any]
) -> None:
    general = slack.add_channel("general")
    random = slack.add_channel("random")
    text = (
        f"{slack.mention} see <#{general}|general> and <#{random}> <#C0GONE>, <https://example.com|example>,"
        " <https://example.com/a?b=1&amp;c=2>, <http://example.org|example.org>,"
        " <!here> <!channel|channel> <!subteam^S0123|@team>,"
        " <mailto:ada@example.com|ada@example.com> <mailto:ada@example.com|write to me>;"
        " typed: &lt;#C999|fake&gt; &amp; &lt;https://x.test|z&gt; &lt;!here&gt; <nothing>"
    )
    slack.inject_message(channel, text, user=ada)

    event = await plugin.event(received_in(channel))

    assert event["content"]["text"] == (
        "@duragent see #general and #random <#C0GONE>, example (https://example.com),"
        " https://example.com/a?b=1&c=2, example.org,"
        " @here @channel @team,"
        " ada@example.com write to me (ada@example.com);"
        " typed: <#C999|fake> & <https://x.test|z> <!here> <nothing>"
    )


async def test_a_mention_in_a_channel_arrives_once_though_slack_sends_it_twice(
    slack: FakeSlack, plugin: PluginProcess, channel: str, ada: dict[str, Any]
) -> None:
    slack.inject_message(channel, f"{slack.mention} what time is it?", user=ada)
    mentioned = await plugin.event(received_in(channel))
    slack.inject_message(channel, "and now?", user=ada)
    plain = await plugin.event(received_in(channel))

    assert mentioned["mentions_bot"] is True
    assert mentioned["content"]["text"] == "@duragent what time is it?"
    assert mentioned["routing"]["chat_type"] == "group"
    assert plain["content"]["text"] == "and now?"  # the app_mention copy was not forwarded in between
    assert plain["mentions_bot"] is False


async def test_a_chat_command_typed_after_the_mention_arrives_as_the_command(
    slack: FakeSlack, plugin: PluginProcess, channel: str, ada: dict[str, Any]
) -> None:
    # Slack refuses "/reset" typed as a message (it is no slash command of Slack's).
    slack.inject_message(channel, f"{slack.mention} /reset", user=ada)
    reset = await plugin.event(received_in(channel))
    dm = slack.dm_channel(ada, fresh=True)
    slack.inject_message(dm, " /status", user=ada)
    status = await plugin.event(received_in(dm))
    slack.inject_message(dm, f"{slack.mention} /etc/hosts holds what?", user=ada)
    path = await plugin.event(received_in(dm))
    slack.inject_message(channel, " /reset@duragent", user=ada)
    named = await plugin.event(received_in(channel))

    assert reset["content"]["text"] == "/reset"
    assert reset["mentions_bot"] is True
    assert named["content"]["text"] == "/reset@duragent"
    assert named["mentions_bot"] is True  # else the router takes it for another bot's command
    assert status["content"]["text"] == "/status"
    assert path["content"]["text"] == "@duragent /etc/hosts holds what?"


async def test_a_message_with_no_text_or_file_is_not_forwarded(
    slack: FakeSlack, plugin: PluginProcess, channel: str, ada: dict[str, Any]
) -> None:
    slack.inject_message(channel, "", user=ada)
    slack.inject_message(channel, "after the empty one", user=ada)

    event = await plugin.event(received_in(channel))

    assert event["content"]["text"] == "after the empty one"


async def test_a_thread_is_its_own_chat_and_replies_go_into_it(
    slack: FakeSlack, plugin: PluginProcess, channel: str, ada: dict[str, Any]
) -> None:
    answer = await plugin.request({"type": "send_message", "chat_id": channel, "content": "shall we?"})
    slack.inject_message(channel, "yes, in a thread", user=ada, thread_ts=answer["message_id"])
    event = await plugin.event(received_in(f"{channel}:{answer['message_id']}"))
    reply = await plugin.request({"type": "send_message", "chat_id": event["chat_id"], "content": "threaded"})

    assert event["routing"]["thread_id"] == answer["message_id"]
    assert event["routing"]["parent_id"] == channel
    assert event["reply_to_bot"] is True
    assert reply["type"] == "command_ok"
    [threaded] = slack.sent_messages(channel, thread_ts=answer["message_id"])
    assert threaded.text == "threaded"


@pytest.mark.parametrize(("reply", "shown"), [("&nbsp;", "&amp;nbsp;"), ("[](<>)", "[](&lt;&gt;)")])
async def test_a_reply_that_renders_to_nothing_is_sent_as_typed_rather_than_dropped(
    slack: FakeSlack, plugin: PluginProcess, channel: str, reply: str, shown: str
) -> None:
    answer = await plugin.request({"type": "send_message", "chat_id": channel, "content": reply})

    [message] = slack.sent_messages(channel)
    assert answer["type"] == "command_ok", answer
    assert message.text == shown


async def test_markdown_is_sent_as_mrkdwn_and_long_replies_in_pieces_under_the_section_limit(
    slack: FakeSlack, plugin: PluginProcess, channel: str
) -> None:
    essay = "\n\n".join(f"Paragraph {n}: **lorem** ipsum " + "dolor " * 80 for n in range(1, 12))
    keyboard = {"rows": [[{"text": "OK", "callback_data": "ok"}]]}

    answer = await plugin.request(
        {"type": "send_message", "chat_id": channel, "content": essay, "inline_keyboard": keyboard}
    )

    pieces = slack.sent_messages(channel)
    assert len(pieces) >= 2
    assert all(len(piece.text) <= SECTION_TEXT_LIMIT for piece in pieces)
    assert pieces[0].text.startswith("Paragraph 1: *lorem* ipsum")
    assert " ".join(piece.text for piece in pieces).split() == essay.replace("**", "*").split()
    assert [bool(piece.buttons) for piece in pieces] == [False] * (len(pieces) - 1) + [True]
    assert answer["message_id"] == pieces[-1].ts


async def test_a_command_holding_backticks_stays_whole_inside_its_code_block(
    slack: FakeSlack, plugin: PluginProcess, channel: str
) -> None:
    # What the router sends for an approval: a fence longer than any backtick run in the command.
    command = "cat > notes.md <<'EOF'\n```\n*not bold* <!channel>\n```\nEOF"
    prompt = f"Command requires approval:\n\n````\n{command}\n````"

    await plugin.request({"type": "send_message", "chat_id": channel, "content": prompt})

    [sent] = slack.sent_messages(channel)
    # Slack ends a code block at the next ```: only the block's own two fences may hold one.
    assert re.findall(r"```", sent.text) == ["```", "```"]
    shown = sent.text.split("```")[1].replace("\u200b", "")
    assert shown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == f"\n{command}\n"


async def test_a_429_from_slack_is_waited_out_and_the_message_still_sent(
    slack: FakeSlack, plugin: PluginProcess, channel: str
) -> None:
    slack.fail_next("chat.postMessage", 429, retry_after=1)

    answer = await plugin.request(
        {"type": "send_message", "chat_id": channel, "content": "patience"}, within=20
    )

    assert answer["type"] == "command_ok"
    assert [m.text for m in slack.sent_messages(channel)] == ["patience"]
    attempts = [c for c in slack.calls_to("chat.postMessage") if c.params.get("channel") == channel]
    assert attempts[1].at - attempts[0].at >= 0.9


async def test_a_reply_piece_slack_fails_with_a_server_error_is_sent_again_once(
    slack: FakeSlack, plugin: PluginProcess, channel: str
) -> None:
    essay = "\n\n".join(f"Paragraph {n}: " + "lorem ipsum " * 30 for n in range(1, 12))
    slack.fail_next("chat.postMessage", 503, times=2)

    answer = await plugin.request({"type": "send_message", "chat_id": channel, "content": essay}, within=30)

    assert answer["type"] == "command_ok"
    pieces = slack.sent_messages(channel)
    assert len(pieces) >= 2
    assert " ".join(piece.text for piece in pieces).split() == essay.split()
    attempts = [c for c in slack.calls_to("chat.postMessage") if c.params.get("channel") == channel]
    assert len(attempts) == len(pieces) + 2


async def test_sending_to_an_unknown_channel_answers_command_error(plugin: PluginProcess) -> None:
    answer = await plugin.request({"type": "send_message", "chat_id": "C0NOPE", "content": "hello?"})

    assert answer["type"] == "command_error"
    assert answer["code"] == "chat_not_found"


async def test_a_pressed_button_is_acknowledged_forwarded_and_answered_only_to_the_presser(
    slack: FakeSlack, plugin: PluginProcess, channel: str, ada: dict[str, Any]
) -> None:
    keyboard = {"rows": [[{"text": "Allow once", "callback_data": "approve:c1:allow_once"}]]}
    await plugin.request(
        {"type": "send_message", "chat_id": channel, "content": "May I?", "inline_keyboard": keyboard}
    )
    [prompt] = slack.sent_messages(channel)

    slack.press_button(prompt, prompt.buttons[0]["action_id"], ada)
    query = await plugin.event("callback_query")
    answered = await plugin.request(
        {
            "type": "answer_callback_query",
            "callback_query_id": query["callback_query_id"],
            "text": "✓ Running",
        }
    )

    assert query["data"] == "approve:c1:allow_once"
    assert query["chat_id"] == channel
    assert query["message_id"] == prompt.ts
    assert query["sender"]["id"] == ada["id"]
    assert answered["type"] == "command_ok"
    [toast] = slack.ephemerals(ada["id"])
    assert (toast.channel, toast.text) == (channel, "✓ Running")


async def test_a_shared_file_is_downloaded_with_the_bot_token_and_its_text_passed_on(
    slack: FakeSlack, plugin: PluginProcess, channel: str, ada: dict[str, Any]
) -> None:
    data = b"%PDF-1.4 fake invoice"
    slack.inject_message(channel, "the invoice", user=ada, files=[("invoice.pdf", data, "application/pdf")])

    event = await plugin.event(received_in(channel))

    assert event["content"] == {"type": "media", "media_type": "document", "caption": "the invoice"}
    assert event["metadata"]["file_name"] == "invoice.pdf"
    assert await asyncio.to_thread(Path(event["metadata"]["file_path"]).read_bytes) == data


async def test_media_edit_and_delete_reach_slack(
    slack: FakeSlack, plugin: PluginProcess, channel: str
) -> None:
    picture = base64.b64encode(b"\x89PNG fake").decode()
    await plugin.request(
        {
            "type": "send_media",
            "chat_id": channel,
            "media": {"source": "base64", "data": picture, "mime_type": "image/png", "filename": "chart.png"},
            "caption": "the **chart**",
        }
    )
    text = await plugin.request({"type": "send_message", "chat_id": channel, "content": "draft"})
    await plugin.request(
        {"type": "edit_message", "chat_id": channel, "message_id": text["message_id"], "content": "_final_"}
    )
    gone = await plugin.request({"type": "send_message", "chat_id": channel, "content": "oops"})
    await plugin.request({"type": "delete_message", "chat_id": channel, "message_id": gone["message_id"]})

    upload, edited, deleted = slack.sent_messages(channel)
    assert upload.files == [("chart.png", b"\x89PNG fake")]
    assert upload.text == "the *chart*"
    assert edited.edits == ["_final_"]
    assert deleted.deleted


@pytest.mark.slow
async def test_when_slack_asks_to_reconnect_the_app_does_and_unacknowledged_events_arrive(
    tmp_path: Path,
) -> None:
    async with FakeSlack() as own:
        ada = own.add_user("ada")
        room = own.add_channel("general")
        process = await start_plugin(own, tmp_path)
        try:
            await own.disconnect()
            own.inject_message(room, "sent while reconnecting", user=ada)
            event = await process.event(received_in(room), within=30)
            await own.wait_until(lambda: own.connections >= 2 or None, within=30)
        finally:
            code = await process.stop()
        logs = process.stderr_path.read_text()

    assert event["content"]["text"] == "sent while reconnecting"
    assert code == 0
    assert own.bot_token not in logs
    assert own.app_token not in logs


@pytest.mark.slow
async def test_slack_failing_at_startup_for_a_moment_does_not_stop_the_app(tmp_path: Path) -> None:
    async with FakeSlack() as own:
        own.fail_next("auth.test", 503, times=2)
        process = await start_plugin(own, tmp_path, retry_backoff="50ms")
        await process.stop()

    assert len(own.calls_to("auth.test")) == 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_http_events_mode_receives_signed_events_and_refuses_unsigned_ones(tmp_path: Path) -> None:
    import aiohttp

    port = free_port()
    url = f"http://127.0.0.1:{port}/slack/events"
    async with FakeSlack(events_url=url, signing_secret="shh") as own:
        ada = own.add_user("ada")
        room = own.add_channel("general")
        process = await start_plugin(own, tmp_path, mode="http", signing_secret="shh", http_port=port)
        try:
            own.inject_message(room, "over HTTP", user=ada)
            event = await process.event(received_in(room), within=30)
            forged = b'{"type": "event_callback", "event": {"type": "message", "text": "forged"}}'
            headers = {
                **own.sign(forged),
                "X-Slack-Signature": "v0=" + "0" * 64,
                "Content-Type": "application/json",
            }
            async with (
                aiohttp.ClientSession() as http,
                http.post(url, data=forged, headers=headers) as response,
            ):
                refused = response.status
        finally:
            await process.stop()

    assert event["content"]["text"] == "over HTTP"
    assert refused == 401


@pytest.mark.slow
async def test_socket_mode_without_the_app_token_fails_startup_saying_what_is_missing(
    slack: FakeSlack, tmp_path: Path
) -> None:
    process = await start_plugin_process(
        "duragent.plugins.slack",
        {"bot_token": slack.bot_token, "api_base": slack.api_base},
        tmp_path,
        drop_env=("SLACK_APP_TOKEN",),
    )
    fatal = await process.event("error", within=READY_WITHIN)
    code = await process.stop()

    assert fatal["fatal"] is True
    assert "SLACK_APP_TOKEN" in fatal["message"]
    assert code == 1


@pytest.mark.slow
async def test_a_refused_app_token_fails_startup_in_one_line_instead_of_retrying_for_ever(
    slack: FakeSlack, tmp_path: Path
) -> None:
    wrong = "xapp-1-wrong-app-token"
    process = await start_plugin_process(
        "duragent.plugins.slack",
        {"bot_token": slack.bot_token, "app_token": wrong, "api_base": slack.api_base},
        tmp_path,
    )
    fatal = await process.event("error", within=READY_WITHIN)
    code = await process.stop()
    logs = process.stderr_path.read_text()

    assert fatal["fatal"] is True
    assert "refused the app-level token" in fatal["message"]
    assert "`app_token`" in fatal["message"]
    assert code == 1
    assert "Traceback" not in logs
    assert wrong not in logs


@pytest.mark.slow
@pytest.mark.parametrize(
    ("swap", "named"),
    [
        ({"bot_token": "xapp-1-an-app-token"}, "`bot_token` holds an app-level token"),
        ({"app_token": "xoxb-1-a-bot-token"}, "`app_token` holds a xoxb- token"),
        ({"api_base": "127.0.0.1:8904/api/"}, "api_base must be a URL"),
        ({"mode": "http", "signing_secret": "shh", "http_path": "slack/events"}, "http_path must be a path"),
        # Else the plugin would listen on 3000 while the proxy sends Slack's events to 8080.
        (
            {"mode": "http", "signing_secret": "shh", "http_prot": 8080},
            "`http_prot` in the gateway's config: did you mean `http_port`?",
        ),
    ],
)
async def test_a_token_in_the_wrong_key_or_a_bare_api_base_is_refused_naming_the_key(
    slack: FakeSlack, tmp_path: Path, swap: dict[str, str], named: str
) -> None:
    config = {"bot_token": slack.bot_token, "app_token": slack.app_token, "api_base": slack.api_base, **swap}
    process = await start_plugin_process("duragent.plugins.slack", config, tmp_path)
    fatal = await process.event("error", within=READY_WITHIN)
    await process.stop()

    assert fatal["fatal"] is True
    assert named in fatal["message"]
