"""Gateway follow-ups, with `duragent serve` running the real Slack plugin against the fake Slack.

- A file a plugin passes on as it stops is still there when the server stores it: the plugin
  used to remove its private download folder as it exited, before the server read the file,
  and the message was lost. The server now keeps the folder until it handled the event.
- A file over `max_download_mb` is not fetched, and its sender is told so in the chat.
- A token Slack stops taking while the app runs (revoked, regenerated, the app uninstalled)
  stops the plugin with one error naming where the token is set; slack_sdk alone retried the
  Socket Mode connection for ever while the bot heard nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from duragent.testing.fake_llm import FakeLLMServer, text
from duragent.testing.fake_slack import FakeSlack
from tests.e2e.served_bot import ServedBot, init_chat_workspace, served_env
from tests.waiting import eventually, until

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


@contextlib.asynccontextmanager
async def served_slack(
    root: Path, **config: object
) -> AsyncIterator[tuple[ServedBot, FakeSlack, dict[str, str]]]:
    """`duragent serve` with the Slack app of an `init --slack` workspace (plugin `config` added)."""
    async with FakeSlack() as slack, FakeLLMServer() as llm:
        owner = slack.add_user("ada", "Ada Lovelace")
        config_path = await asyncio.to_thread(
            init_chat_workspace, root / "home", "slack", owner["id"], slack.api_base, llm, [], **config
        )
        logs = root / "logs"
        logs.mkdir()
        env = served_env(SLACK_BOT_TOKEN=slack.bot_token, SLACK_APP_TOKEN=slack.app_token)
        bot = ServedBot(config=config_path, llm=llm, logs=logs, env=env)
        await bot.start()
        try:
            yield bot, slack, owner
        finally:
            if bot.server is not None:
                await bot.stop()


@pytest_asyncio.fixture
async def slack_bot(tmp_path: Path) -> AsyncIterator[tuple[ServedBot, FakeSlack, dict[str, str]]]:
    async with served_slack(tmp_path) as served:
        yield served


async def test_files_still_downloading_when_the_server_stops_are_stored(
    slack_bot: tuple[ServedBot, FakeSlack, dict[str, str]],
) -> None:
    bot, slack, owner = slack_bot
    slack.download_delay = 0.2
    dm = slack.dm_channel(owner)
    # The first file takes the server a moment to store: the second one's turn comes after the
    # plugin, stopped while it downloads, has passed it on and exited.
    scan = b"%PDF-1.7 " + b"\0" * (96 << 20)
    slack.inject_message(dm, "the scan", user=owner, files=[("scan.pdf", scan, "application/pdf")])
    slack.inject_message(
        dm, "the invoice", user=owner, files=[("invoice.pdf", b"%PDF-1.7 42", "application/pdf")]
    )
    await until(lambda: slack.downloads == ["scan.pdf", "invoice.pdf"], within=20)

    assert await bot.stop() == 0

    pending_path = bot.config.parent / ".duragent" / "gateways" / "pending.json"
    assert pending_path.exists(), bot.log()
    texts = [text for entry in json.loads(pending_path.read_text()) for text in entry["texts"]]
    assert len(texts) == 2, (texts, bot.log())
    scan_text, invoice_text = texts
    assert scan_text.startswith("[document saved as artifact inbox/"), texts
    assert scan_text.endswith("the scan")
    assert invoice_text.startswith("[document saved as artifact inbox/"), texts
    assert invoice_text.endswith("the invoice")
    assert "No such file" not in bot.log()


async def until_exited(bot: ServedBot) -> dict[str, object]:
    """The plugin's status once it exited (and the server, `restart: always`, started it again),
    rather than retrying for ever."""

    async def restarted() -> dict[str, object] | None:
        status = await bot.gateway()
        return status if status["restarts"] >= 1 else None

    return await eventually(restarted, within=20, every=0.1)


async def test_an_app_token_revoked_while_running_stops_the_plugin_naming_it(
    slack_bot: tuple[ServedBot, FakeSlack, dict[str, str]],
) -> None:
    bot, slack, _ = slack_bot
    slack.app_token = "xapp-1-A0-regenerated"
    await slack.disconnect()

    # (logged by the server, which names the variable the token came from)
    await bot.wait_for_log("Slack refused the app-level token (xapp-) in `app_token` (from SLACK_APP_TOKEN")
    await bot.wait_for_log("(invalid_auth) while running")
    status = await until_exited(bot)
    assert "fatal unauthorized: Slack refused the app-level token" in str(status["last_error"])


async def test_a_bot_token_revoked_while_running_stops_the_plugin_naming_it(
    slack_bot: tuple[ServedBot, FakeSlack, dict[str, str]],
) -> None:
    bot, slack, owner = slack_bot
    slack.bot_token = "xoxb-reinstalled"
    slack.inject_message(slack.dm_channel(owner), "are you there?", user=owner)

    await bot.wait_for_log("Slack refused the bot token (xoxb-) in `bot_token` (from SLACK_BOT_TOKEN")
    await bot.wait_for_log("(invalid_auth) while running")
    await until_exited(bot)


async def test_the_sender_is_told_a_file_over_the_limit_was_not_received(tmp_path: Path) -> None:
    async with served_slack(tmp_path, max_download_mb=1) as (bot, slack, owner):
        bot.llm.enqueue(text("I see no file, sorry."))
        dm = slack.dm_channel(owner)
        slack.inject_message(
            dm, "the backup", user=owner, files=[("backup.tar", b"\0" * (2 << 20), "application/x-tar")]
        )

        notice = await slack.wait_for_message(dm, within=20)
        request = await bot.wait_for_request("the backup")

    assert (
        notice.text
        == "I did not receive backup.tar: the file is 2.0 MB, over the 1 MB limit (`max_download_mb`)."
    )
    assert request.messages[-1]["content"] == (
        "[document backup.tar not received: the file is 2.0 MB, over the 1 MB limit (`max_download_mb`)]"
        " the backup"
    )
    assert slack.downloads == []


async def test_a_strangers_file_is_never_downloaded(
    slack_bot: tuple[ServedBot, FakeSlack, dict[str, str]],
) -> None:
    """Someone the agent does not answer must not be able to make the bot fetch (and hold in
    memory) files of up to `max_download_mb`: the plugin knows whom the server answers."""
    bot, slack, owner = slack_bot
    stranger = slack.add_user("mallory", "Mallory")
    slack.inject_message(
        slack.dm_channel(stranger),
        "take this",
        user=stranger,
        files=[("junk.bin", b"\0" * 4096, "application/zip")],
    )
    await bot.wait_for_log(f"denied message from sender {stranger['id']}", within=20)

    bot.llm.enqueue(text("Thanks for the invoice."))
    slack.inject_message(
        slack.dm_channel(owner),
        "the invoice",
        user=owner,
        files=[("invoice.pdf", b"%PDF-1.7 42", "application/pdf")],
    )
    request = await bot.wait_for_request("the invoice")

    assert slack.downloads == ["invoice.pdf"]
    assert "saved as artifact" in request.messages[-1]["content"]


async def test_files_from_someone_the_allowlist_lets_in_while_serving_are_downloaded(
    slack_bot: tuple[ServedBot, FakeSlack, dict[str, str]],
) -> None:
    """The plugin is told when an agent's allowlist changes, not only when it starts."""
    bot, slack, owner = slack_bot
    friend = slack.add_user("bea", "Bea")
    agent_yaml = bot.config.parent / ".duragent" / "agents" / "assistant" / "agent.yaml"
    spec = agent_yaml.read_text()
    assert spec.count(owner["id"]) == 1, spec
    agent_yaml.write_text(re.sub(f'"?{owner["id"]}"?', f'"{owner["id"]}", "{friend["id"]}"', spec))

    assert bot.server is not None
    async with (
        aiohttp.ClientSession(headers=bot.server.headers) as http,
        http.post(f"{bot.url}/api/admin/v1/reload-agents") as response,
    ):
        assert response.status == 200, await response.text()

    # Her first message after the reload is what tells the server the plugin's admission is stale.
    dm = slack.dm_channel(friend)
    bot.llm.enqueue(text("Hello Bea."))
    slack.inject_message(dm, "hi", user=friend)
    await bot.wait_for_request("hi")
    bot.llm.enqueue(text("Thanks for the invoice."))
    slack.inject_message(
        dm, "the invoice", user=friend, files=[("invoice.pdf", b"%PDF-1.7 42", "application/pdf")]
    )
    request = await bot.wait_for_request("the invoice")

    assert slack.downloads == ["invoice.pdf"]
    assert "saved as artifact" in request.messages[-1]["content"]
