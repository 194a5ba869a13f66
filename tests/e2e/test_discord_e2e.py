"""The Discord bot end to end, all real processes: `duragent serve` (from a workspace made by
`duragent init --discord`), its `duragent-gateway-discord` plugin subprocess running unmodified
discord.py, the fake Discord (REST + Gateway websocket) and the fake LLM.

One server serves the whole module (a plugin start costs seconds: discord.py); each test talks
in channels of its own. The restart test leaves a working bot behind.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from duragent.testing.fake_discord import MESSAGE_LIMIT, DiscordMessage, FakeDiscord
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.served_bot import ServedBot, init_chat_workspace, served_env

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

REPLY_WITHIN = 20.0


@dataclass(kw_only=True)
class DiscordBot(ServedBot):
    """The Discord bot's server and the fake Discord its plugin connects to."""

    discord: FakeDiscord
    owner: dict[str, Any]
    guild: str
    allowed: list[str]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DiscordBot]:
    """`duragent serve` running the Discord bot of a fresh `init --discord` workspace."""
    async with FakeDiscord() as discord, FakeLLMServer() as llm:
        owner = discord.add_user("ada", "Ada Lovelace")
        guild = discord.add_guild("Home")
        allowed = [discord.add_channel(guild, f"team-{n}") for n in range(4)]
        root = tmp_path_factory.mktemp("discord-bot")
        config = await asyncio.to_thread(
            init_chat_workspace, root / "home", "discord", owner["id"], discord.api_base, llm, allowed
        )
        logs = root / "logs"
        logs.mkdir()
        # The fake stands in for discord.com; the Gateway's address comes from GET /gateway/bot.
        env = served_env(DISCORD_BOT_TOKEN=discord.token)
        served = DiscordBot(
            config=config,
            llm=llm,
            logs=logs,
            env=env,
            discord=discord,
            owner=owner,
            guild=guild,
            allowed=allowed,
        )
        await served.start()
        yield served
        if served.server is not None:
            await served.stop()


@pytest.fixture
def dm(bot: DiscordBot) -> str:
    """A DM channel with the owner no other test uses (sessions are per channel)."""
    return bot.discord.dm_channel(bot.owner, fresh=True)


def replying_to(message: dict[str, Any]) -> Callable[[DiscordMessage], bool]:
    """Matches the bot's messages that reply to `message`."""
    return lambda sent: sent.reference_id == message["id"]


def containing(words: str) -> Callable[[DiscordMessage], bool]:
    """Matches the bot's messages whose text contains `words`."""
    return lambda sent: words in sent.content


async def reply_to(bot: DiscordBot, message: dict[str, Any]) -> DiscordMessage:
    """The bot's reply to one of the user's messages."""
    return await bot.discord.wait_for_message(
        message["channel_id"], replying_to(message), within=REPLY_WITHIN
    )


async def next_answer(bot: DiscordBot, channel: str, content: str, **options: Any) -> DiscordMessage:
    """The owner says `content` in `channel`; the bot's next message there."""
    before = len(bot.discord.sent_messages(channel))
    bot.discord.inject_message(channel, content, author=bot.owner, **options)
    return await bot.discord.wait_for_message(
        channel, lambda m: m in bot.discord.sent_messages(channel)[before:], within=REPLY_WITHIN
    )


async def test_the_owner_gets_a_formatted_reply_while_typing_shows(bot: DiscordBot, dm: str) -> None:
    bot.llm.enqueue(text("**Hello** Ada\n\n| a | b |\n|---|---|\n| 1 | 2 |", chunks=3))
    asked = bot.discord.inject_message(dm, "hi bot", author=bot.owner)

    reply = await reply_to(bot, asked)

    assert reply.content == "**Hello** Ada\n\n```\na | b\n--+--\n1 | 2\n```"
    assert dm in bot.discord.typing
    typing_at = min(c.at for c in bot.discord.calls_to("POST /channels/{channel_id}/typing") if dm in c.path)
    sent_at = next(c.at for c in bot.discord.calls_to("POST /channels/{channel_id}/messages") if dm in c.path)
    assert typing_at < sent_at


async def test_notify_user_from_a_continue_mode_session_reaches_the_dm(bot: DiscordBot, dm: str) -> None:
    bot.llm.enqueue(
        tool_calls([("notify_user", {"message": "Halfway there: 3 of 6 files checked"})]),
        text("All six files are fine."),
    )
    asked = bot.discord.inject_message(dm, "check my files and keep me posted", author=bot.owner)

    final = await reply_to(bot, asked)

    notice, answer = bot.discord.sent_messages(dm)
    assert notice.content == "Halfway there: 3 of 6 files checked"
    assert notice.reference_id is None  # a notification, not the answer
    assert answer is final
    assert answer.content == "All six files are fine."


async def test_a_stranger_gets_no_reply(bot: DiscordBot) -> None:
    stranger = bot.discord.add_user("mallory")
    stranger_dm = bot.discord.dm_channel(stranger)
    bot.discord.inject_message(stranger_dm, "hello bot, run rm -rf / for me", author=stranger)

    await bot.wait_for_log(f"denied message from sender {stranger['id']}")
    await asyncio.sleep(0.5)  # a reply, had one been sent, would come right after the decision

    assert bot.discord.sent_messages(stranger_dm) == []
    assert bot.requests_mentioning("rm -rf /") == []


async def test_a_strangers_attachment_is_not_downloaded(bot: DiscordBot) -> None:
    """Strangers could otherwise make the bot fetch (into memory) files of up to 100 MB."""
    stranger = bot.discord.add_user("trudy")
    bot.discord.inject_message(
        bot.discord.dm_channel(stranger),
        "take this",
        author=stranger,
        attachments=[("payload.bin", b"\0" * 4096, "application/octet-stream")],
    )

    await bot.wait_for_log(f"denied message from sender {stranger['id']}")

    assert "payload.bin" not in bot.discord.downloads


async def test_in_a_channel_only_mentions_are_answered_also_inside_its_threads(bot: DiscordBot) -> None:
    channel = bot.allowed[0]
    bea = bot.discord.add_user("bea", "Bea")
    bot.discord.inject_message(channel, "we meet at noon by the fountain", author=bea)
    asked = bot.discord.inject_message(channel, f"{bot.discord.mention} where do we meet?", author=bot.owner)
    reply = await reply_to(bot, asked)
    thread = bot.discord.add_thread(channel, "lunch")
    in_thread = bot.discord.inject_message(thread, f"{bot.discord.mention} and lunch?", author=bot.owner)
    thread_reply = await reply_to(bot, in_thread)
    other = bot.discord.add_channel(bot.guild, "not-allowed")
    bot.discord.inject_message(other, f"{bot.discord.mention} hello?", author=bot.owner)
    await bot.wait_for_log(f"chat {other} is not on spec.access.groups.allowlist")

    [request] = bot.requests_mentioning("where do we meet?")
    said = "\n".join(str(m.get("content")) for m in request.messages if m.get("role") == "user")
    assert "Bea: we meet at noon by the fountain" in said
    assert "where do we meet?" in reply.content
    assert [m.id for m in bot.discord.sent_messages(channel)] == [reply.id]
    assert "and lunch?" in thread_reply.content
    assert bot.requests_mentioning("fountain")[-1] is request  # the thread is a conversation of its own
    assert bot.discord.sent_messages(other) == []


async def test_reset_addressed_to_the_bot_in_a_channel_ends_the_session_in_each_documented_form(
    bot: DiscordBot,
) -> None:
    # `activation: mention`: a bare /reset is group talk; `@bot /reset`, `/reset@bot` and a reply
    # to the bot address it (docs/gateways.md).
    channel, mention = bot.allowed[2], bot.discord.mention
    await next_answer(bot, channel, f"{mention} the door is blue")
    after_mention = await next_answer(bot, channel, f"{mention} /reset")
    await next_answer(bot, channel, f"{mention} the door is red")
    naming_the_bot = await next_answer(bot, channel, "/reset@duragent-test")
    answer = await next_answer(bot, channel, f"{mention} the door is green")
    replying = await next_answer(bot, channel, "/reset", reply_to=answer.id)

    reset = "Session reset. Send a message to start a new conversation."
    assert [after_mention.content, naming_the_bot.content, replying.content] == [reset] * 3
    assert bot.requests_mentioning("/reset") == []  # answered as commands, never sent to the agent
    [green] = bot.requests_mentioning("the door is green")
    assert "the door is red" not in str(green.messages)  # a new session: the reset took


async def test_status_after_the_bots_mention_is_answered_in_a_channel_and_a_dm(
    bot: DiscordBot, dm: str
) -> None:
    channel, mention = bot.allowed[3], bot.discord.mention
    await next_answer(bot, channel, f"{mention} hello from the channel")
    await next_answer(bot, dm, "hello from the dm")

    in_channel = await next_answer(bot, channel, f"{mention} /status")
    in_dm = await next_answer(bot, dm, f"{mention} /status")

    assert in_channel.content.startswith("Session: ")
    assert in_dm.content.startswith("Session: ")
    assert in_channel.content != in_dm.content  # each chat's own session
    assert bot.requests_mentioning("/status") == []


async def test_only_the_requester_may_approve_with_the_button_and_then_the_tool_runs(bot: DiscordBot) -> None:
    channel = bot.allowed[1]
    bea = bot.discord.add_user("bea2", "Bea")
    bot.llm.enqueue(
        tool_calls([("bash", {"command": "echo approved-and-ran"})]), text("Done, it printed the words.")
    )
    asked = bot.discord.inject_message(
        channel, f"{bot.discord.mention} run the echo please", author=bot.owner
    )
    prompt = await bot.discord.wait_for_message(channel, lambda m: bool(m.buttons), within=REPLY_WITHIN)
    assert "echo approved-and-ran" in prompt.content
    assert [b["label"] for b in prompt.buttons] == ["Allow once", "Allow always", "Deny"]
    allow_once = prompt.buttons[0]["custom_id"]

    bea_pressed = bot.discord.press_button(prompt.id, allow_once, bea)
    refusal = await bot.discord.wait_for_response(
        bea_pressed["id"], lambda m: bool(m.content), within=REPLY_WITHIN
    )
    await asyncio.sleep(0.3)
    assert len(bot.requests_mentioning("run the echo please")) == 1  # the turn still waits: nothing ran
    owner_pressed = bot.discord.press_button(prompt.id, allow_once, bot.owner)
    toast = await bot.discord.wait_for_response(
        owner_pressed["id"], lambda m: bool(m.content), within=REPLY_WITHIN
    )
    final = await bot.discord.wait_for_message(channel, containing("Done, it printed"), within=REPLY_WITHIN)

    assert refusal.content == "Only the original requester can approve this command"
    assert refusal.ephemeral
    assert toast.content == "✓ Running"
    assert final.reference_id == asked["id"]
    after_tool = bot.requests_mentioning("approved-and-ran")[-1]
    [result] = [m for m in after_tool.messages if m.get("role") == "tool"]
    assert "approved-and-ran" in str(result["content"])


async def test_a_long_reply_is_split_under_2000_characters_in_order(bot: DiscordBot, dm: str) -> None:
    essay = "\n\n".join(f"Paragraph {n}: " + "lorem ipsum " * 40 for n in range(1, 16))
    bot.llm.enqueue(text(essay, chunks=5))
    asked = bot.discord.inject_message(dm, "write me an essay", author=bot.owner)

    first = await reply_to(bot, asked)
    await bot.discord.wait_for_message(dm, containing("Paragraph 15:"), within=REPLY_WITHIN)

    pieces = bot.discord.sent_messages(dm)
    assert len(pieces) >= 4
    assert pieces[0] is first
    assert all(len(piece.content) <= MESSAGE_LIMIT for piece in pieces)
    assert " ".join(piece.content for piece in pieces).split() == essay.split()
    assert [piece.reference_id for piece in pieces[1:]] == [None] * (len(pieces) - 1)


async def test_an_attachment_is_stored_as_an_artifact_for_the_agent(bot: DiscordBot, dm: str) -> None:
    asked = bot.discord.inject_message(
        dm, "here is my list", author=bot.owner, attachments=[("todo.txt", b"buy milk\n", "text/plain")]
    )
    await reply_to(bot, asked)

    [request] = bot.requests_mentioning("here is my list")
    said = str(request.messages[-1]["content"])
    assert re.search(r"\[document saved as artifact inbox/\d+-todo\.txt", said), said
    stored = list((bot.config.parent / ".duragent" / "artifacts" / "assistant" / "inbox").glob("*-todo.txt"))
    assert [path.read_bytes() for path in stored] == [b"buy milk\n"]


async def test_after_a_server_restart_the_conversation_continues_in_the_same_session(
    bot: DiscordBot, dm: str
) -> None:
    first = bot.discord.inject_message(dm, "my locker code is 4417", author=bot.owner)
    await reply_to(bot, first)
    session_before = await status_session_id(bot, dm)

    assert await bot.stop() == 0
    await bot.start()
    second = bot.discord.inject_message(dm, "what is my locker code?", author=bot.owner)
    await reply_to(bot, second)

    [request] = bot.requests_mentioning("what is my locker code?")
    contents = [str(m.get("content")) for m in request.messages]
    assert "my locker code is 4417" in contents
    assert await status_session_id(bot, dm) == session_before


async def status_session_id(bot: DiscordBot, channel: str) -> str:
    """Ask `/status` in the channel and return the session id the bot names."""
    before = len(bot.discord.sent_messages(channel))
    bot.discord.inject_message(channel, "/status", author=bot.owner)
    answer = await bot.discord.wait_for_message(
        channel,
        lambda m: m in bot.discord.sent_messages(channel)[before:] and "Session:" in m.content,
        within=REPLY_WITHIN,
    )
    found = re.search(r"Session: (\S+)", answer.content)
    assert found, answer.content
    return found.group(1)
