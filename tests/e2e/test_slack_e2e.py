"""The Slack app end to end, all real processes: `duragent serve` (from a workspace made by
`duragent init --slack`), its `duragent-gateway-slack` plugin subprocess running unmodified
slack-bolt in Socket Mode, the fake Slack (Web API + Socket Mode websocket) and the fake LLM.

One server serves the whole module (a plugin start costs seconds: slack-bolt); each test talks
in channels of its own. The restart test leaves a working app behind.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from duragent.testing.fake_llm import FakeLLMServer, error, text, tool_calls
from duragent.testing.fake_slack import SECTION_TEXT_LIMIT, FakeSlack, SlackMessage
from tests.e2e.served_bot import ServedBot, init_chat_workspace, served_env

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

REPLY_WITHIN = 20.0


@dataclass(kw_only=True)
class SlackBot(ServedBot):
    """The Slack app's server and the fake Slack its plugin connects to."""

    slack: FakeSlack
    owner: dict[str, Any]
    allowed: list[str]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SlackBot]:
    """`duragent serve` running the Slack app of a fresh `init --slack` workspace."""
    async with FakeSlack() as slack, FakeLLMServer() as llm:
        owner = slack.add_user("ada", "Ada Lovelace")
        allowed = [slack.add_channel(f"team-{n}") for n in range(3)]
        root = tmp_path_factory.mktemp("slack-bot")
        config = await asyncio.to_thread(
            init_chat_workspace, root / "home", "slack", owner["id"], slack.api_base, llm, allowed
        )
        logs = root / "logs"
        logs.mkdir()
        env = served_env(SLACK_BOT_TOKEN=slack.bot_token, SLACK_APP_TOKEN=slack.app_token)
        served = SlackBot(
            config=config, llm=llm, logs=logs, env=env, slack=slack, owner=owner, allowed=allowed
        )
        await served.start()
        yield served
        if served.server is not None:
            await served.stop()


@pytest.fixture
def dm(bot: SlackBot) -> str:
    """A DM channel with the owner no other test uses (sessions are per channel)."""
    return bot.slack.dm_channel(bot.owner, fresh=True)


def containing(words: str) -> Callable[[SlackMessage], bool]:
    """Matches the bot's messages whose text contains `words`."""
    return lambda sent: words in sent.shown_text


async def test_the_owner_gets_a_formatted_reply(bot: SlackBot, dm: str) -> None:
    bot.llm.enqueue(text("**Hello** Ada, [docs](https://example.test) say `x < y`", chunks=3))
    bot.slack.inject_message(dm, "hi bot", user=bot.owner)

    reply = await bot.slack.wait_for_message(dm, within=REPLY_WITHIN)

    assert reply.text == "*Hello* Ada, <https://example.test|docs> say `x &lt; y`"
    [request] = bot.requests_mentioning("hi bot")
    assert request.messages[-1] == {"role": "user", "content": "hi bot"}


async def test_notify_user_from_a_continue_mode_session_reaches_the_dm(bot: SlackBot, dm: str) -> None:
    bot.llm.enqueue(
        tool_calls([("notify_user", {"message": "Halfway there: 3 of 6 files checked"})]),
        text("All six files are fine."),
    )
    bot.slack.inject_message(dm, "check my files and keep me posted", user=bot.owner)

    await bot.slack.wait_for_message(dm, containing("All six files"), within=REPLY_WITHIN)

    assert [m.text for m in bot.slack.sent_messages(dm)] == [
        "Halfway there: 3 of 6 files checked",
        "All six files are fine.",
    ]


async def test_starting_with_the_token_in_slack_bot_token_warns_of_nothing(bot: SlackBot) -> None:
    await bot.wait_for_log("connected as @duragent")

    # Set as the docs say, SLACK_BOT_TOKEN is the token the app uses: slack-bolt's warning that
    # it "will be unused" would send the operator looking for a problem that is not there.
    assert "will be unused" not in bot.log()


async def test_a_stranger_gets_no_reply(bot: SlackBot) -> None:
    stranger = bot.slack.add_user("mallory")
    stranger_dm = bot.slack.dm_channel(stranger)
    bot.slack.inject_message(stranger_dm, "hello bot, run rm -rf / for me", user=stranger)

    await bot.wait_for_log(f"denied message from sender {stranger['id']}")
    await asyncio.sleep(0.5)  # a reply, had one been sent, would come right after the decision

    assert bot.slack.sent_messages(stranger_dm) == []
    assert bot.requests_mentioning("rm -rf /") == []


async def test_in_a_channel_only_mentions_are_answered_and_threads_are_answered_in_the_thread(
    bot: SlackBot,
) -> None:
    channel = bot.allowed[0]
    bea = bot.slack.add_user("bea", "Bea")
    bot.slack.inject_message(channel, "we meet at noon by the fountain", user=bea)
    bot.slack.inject_message(channel, f"{bot.slack.mention} where do we meet?", user=bot.owner)
    reply = await bot.slack.wait_for_message(channel, containing("where do we meet?"), within=REPLY_WITHIN)
    bot.slack.inject_message(channel, "and lunch?", user=bot.owner, thread_ts=reply.ts)
    in_thread = await bot.slack.wait_for_message(
        channel, lambda m: m.thread_ts == reply.ts, within=REPLY_WITHIN
    )

    [request] = bot.requests_mentioning("where do we meet?")
    said = "\n".join(str(m.get("content")) for m in request.messages if m.get("role") == "user")
    assert "Bea: we meet at noon by the fountain" in said
    assert "and lunch?" in in_thread.text  # a reply to the bot in its thread counts as addressed
    assert [m.ts for m in bot.slack.sent_messages(channel) if m.thread_ts is None] == [reply.ts]


async def test_only_the_requester_may_approve_with_the_button_and_then_the_tool_runs(bot: SlackBot) -> None:
    channel = bot.allowed[1]
    bea = bot.slack.add_user("bea2", "Bea")
    bot.llm.enqueue(
        tool_calls([("bash", {"command": "echo approved-and-ran"})]), text("Done, it printed the words.")
    )
    bot.slack.inject_message(channel, f"{bot.slack.mention} run the echo please", user=bot.owner)
    prompt = await bot.slack.wait_for_message(channel, lambda m: bool(m.buttons), within=REPLY_WITHIN)
    assert "echo approved-and-ran" in prompt.shown_text
    assert [b["text"]["text"] for b in prompt.buttons] == ["Allow once", "Allow always", "Deny"]
    allow_once = prompt.buttons[0]["action_id"]

    bot.slack.press_button(prompt, allow_once, bea)
    [refusal] = await bot.slack.wait_until(
        lambda: bot.slack.ephemerals(bea["id"]) or None, within=REPLY_WITHIN
    )
    await asyncio.sleep(0.3)
    assert len(bot.requests_mentioning("run the echo please")) == 1  # the turn still waits: nothing ran
    bot.slack.press_button(prompt, allow_once, bot.owner)
    final = await bot.slack.wait_for_message(channel, containing("Done, it printed"), within=REPLY_WITHIN)

    assert refusal.text == "Only the original requester can approve this command"
    assert [m.text for m in bot.slack.ephemerals(bot.owner["id"])] == ["✓ Running"]
    after_tool = bot.requests_mentioning("approved-and-ran")[-1]
    [result] = [m for m in after_tool.messages if m.get("role") == "tool"]
    assert "approved-and-ran" in str(result["content"])
    assert final.thread_ts is None


async def test_an_approval_with_a_thread_under_it_is_still_answered_by_its_buttons(bot: SlackBot) -> None:
    channel = bot.allowed[2]
    bot.llm.enqueue(tool_calls([("bash", {"command": "echo asked-about-in-its-thread"})]))
    bot.slack.inject_message(channel, f"{bot.slack.mention} run the thread echo", user=bot.owner)
    prompt = await bot.slack.wait_for_message(channel, lambda m: bool(m.buttons), within=REPLY_WITHIN)
    # Asking about the command in the prompt's thread makes the prompt a thread's parent.
    bot.llm.enqueue(text("It prints four words."))
    bot.slack.inject_message(channel, "what does it print?", user=bot.owner, thread_ts=prompt.ts)
    await bot.slack.wait_for_message(channel, containing("It prints four words."), within=REPLY_WITHIN)
    bot.llm.enqueue(text("Done, the thread echo ran."))

    bot.slack.press_button(prompt, prompt.buttons[0]["action_id"], bot.owner)

    final = await bot.slack.wait_for_message(
        channel, containing("Done, the thread echo ran."), within=REPLY_WITHIN
    )
    assert final.thread_ts is None
    [toast] = [m for m in bot.slack.ephemerals(bot.owner["id"]) if m.channel == channel]
    assert (toast.text, toast.thread_ts) == ("✓ Running", None)  # in the channel, where it was pressed


async def test_a_long_reply_is_split_under_slacks_limits_in_order(bot: SlackBot, dm: str) -> None:
    essay = "\n\n".join(f"Paragraph {n}: " + "lorem ipsum " * 60 for n in range(1, 16))
    bot.llm.enqueue(text(essay, chunks=5))
    bot.slack.inject_message(dm, "write me an essay", user=bot.owner)

    await bot.slack.wait_for_message(dm, containing("Paragraph 15:"), within=REPLY_WITHIN)

    pieces = bot.slack.sent_messages(dm)
    assert len(pieces) >= 4
    assert all(len(piece.text) <= SECTION_TEXT_LIMIT for piece in pieces)
    assert " ".join(piece.text for piece in pieces).split() == essay.split()


async def test_help_names_the_commands_as_slack_lets_them_be_typed(bot: SlackBot, dm: str) -> None:
    # Slack refuses a message starting with "/" that is none of its own slash commands.
    bot.slack.inject_message(dm, f"{bot.slack.mention} /help", user=bot.owner)

    answer = await bot.slack.wait_for_message(dm, containing("/reset"), within=REPLY_WITHIN)

    lines = answer.shown_text.splitlines()
    assert "@duragent /reset: start a new conversation" in lines
    assert "@duragent /status: show this chat's session" in lines
    assert [line for line in lines if line.startswith("/")] == []
    assert bot.requests_mentioning("/help") == []


async def test_a_failed_turn_offers_retry_as_slack_lets_it_be_typed(bot: SlackBot, dm: str) -> None:
    bot.llm.enqueue(error(400, "the model refused the request"))
    bot.slack.inject_message(dm, "summarise my week", user=bot.owner)

    failure = await bot.slack.wait_for_message(
        dm, containing("Error processing request"), within=REPLY_WITHIN
    )

    assert failure.shown_text.endswith("@duragent /retry runs it again.")


async def test_after_a_server_restart_the_conversation_continues_in_the_same_session(
    bot: SlackBot, dm: str
) -> None:
    bot.slack.inject_message(dm, "my locker code is 4417", user=bot.owner)
    await bot.slack.wait_for_message(dm, containing("4417"), within=REPLY_WITHIN)
    session_before = await status_session_id(bot, dm)

    assert await bot.stop() == 0
    await bot.start()
    bot.slack.inject_message(dm, "what is my locker code?", user=bot.owner)
    await bot.slack.wait_for_message(dm, containing("what is my locker code?"), within=REPLY_WITHIN)

    [request] = bot.requests_mentioning("what is my locker code?")
    contents = [str(m.get("content")) for m in request.messages]
    assert "my locker code is 4417" in contents
    assert await status_session_id(bot, dm) == session_before


async def status_session_id(bot: SlackBot, channel: str) -> str:
    """Ask `/status` in the channel and return the session id the bot names."""
    before = len(bot.slack.sent_messages(channel))
    bot.slack.inject_message(channel, "/status", user=bot.owner)
    answer = await bot.slack.wait_for_message(
        channel,
        lambda m: m in bot.slack.sent_messages(channel)[before:] and "Session:" in m.text,
        within=REPLY_WITHIN,
    )
    found = re.search(r"Session: (\S+)", answer.text)
    assert found, answer.text
    return found.group(1)
