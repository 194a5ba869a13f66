"""A third-party plugin written from the docs, run as a real subprocess with PluginProcess."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

from duragent.gateways.manager import GatewayTiming
from duragent.gateways.protocol import (
    CAPABILITIES,
    CommandError,
    CommandOk,
    Error,
    MessageReceived,
    Ready,
    Routing,
    Sender,
    SendMessage,
    Shutdown,
    ShutdownEvent,
    TextContent,
    encode,
    parse_event,
)
from duragent.testing.echo_gateway import EchoGatewayControl
from duragent.testing.plugin_process import PluginProcess

PLUGIN = '''
import asyncio
import sys

from duragent.gateways.sdk import GatewayPlugin


class MatrixPlugin(GatewayPlugin):
    name = "matrix"
    capabilities = ("reply",)

    def __init__(self):
        super().__init__()
        self.sent = []

    async def on_start(self):
        if self.config.get("hang_start"):  # a homeserver that never answers
            try:
                await self.error("not_connected", "the homeserver does not answer")
                await asyncio.Event().wait()
            finally:
                print("gave up connecting")
        if self.config.get("fail_start"):
            raise asyncio.TimeoutError()
        print("connected, says a chatty library")

    async def on_shutdown(self):
        print("disconnected from the homeserver")

    async def on_send_message(self, cmd):
        if cmd.content == "hang":
            await asyncio.Event().wait()
        if cmd.content == "object":
            return {"event_id": "$1"}
        if cmd.content in ("lost", "revoked"):  # its receive loop died / the platform said go away
            self.request_stop(cmd.content, failed=cmd.content == "lost")
        self.sent.append(cmd.content)
        return len(self.sent)  # platforms often number their messages


class CrowdedPlugin(MatrixPlugin):
    """Names an author picks for their own state and helpers, which the SDK must not depend on."""

    def __init__(self):
        super().__init__()
        self._tasks = []
        self._out = []

    async def _handle(self, event):
        raise AssertionError("the SDK called the plugin's own _handle")

    def _dispatch(self, event):
        raise AssertionError("the SDK called the plugin's own _dispatch")

    async def on_send_message(self, cmd):
        self._out.append(cmd.content)
        return str(len(self._out))


if __name__ == "__main__":
    (CrowdedPlugin if "crowded" in sys.argv else MatrixPlugin)().run()
'''


async def start(tmp_path: Path, *args: str, **config: object) -> PluginProcess:
    script = tmp_path / "matrix_plugin.py"
    script.write_text(textwrap.dedent(PLUGIN))
    return await PluginProcess.start(sys.executable, str(script), *args, config=config)


async def test_a_numeric_message_id_is_answered_as_a_string_and_the_chat_keeps_working(
    tmp_path: Path,
) -> None:
    async with await start(tmp_path) as plugin:
        await plugin.wait_for(lambda event: isinstance(event, Ready))
        first = await plugin.request(SendMessage(request_id="r1", chat_id="!room", content="hi"))
        second = await plugin.request(SendMessage(request_id="r2", chat_id="!room", content="again"))
    assert first == CommandOk(request_id="r1", message_id="1")
    assert second == CommandOk(request_id="r2", message_id="2")


async def test_a_handler_returning_something_else_answers_an_error_naming_it(tmp_path: Path) -> None:
    async with await start(tmp_path) as plugin:
        await plugin.wait_for(lambda event: isinstance(event, Ready))
        answer = await plugin.request(SendMessage(request_id="r1", chat_id="!room", content="object"))
        after = await plugin.request(SendMessage(request_id="r2", chat_id="!room", content="next"))
    assert isinstance(answer, CommandError)
    assert answer.code == "platform_error"
    assert "on_send_message returned {'event_id': '$1'}" in answer.message
    assert after == CommandOk(request_id="r2", message_id="1")


async def test_a_plugin_may_use_names_like_the_sdks_own_for_its_state(tmp_path: Path) -> None:
    async with await start(tmp_path, "crowded") as plugin:
        await plugin.wait_for(lambda event: isinstance(event, Ready))
        answer = await plugin.request(SendMessage(request_id="r1", chat_id="!room", content="hi"))
    assert answer == CommandOk(request_id="r1", message_id="1")
    assert "Traceback" not in plugin.log


async def test_print_goes_to_the_log_not_to_the_protocol(tmp_path: Path) -> None:
    async with await start(tmp_path) as plugin:
        await plugin.wait_for(lambda event: isinstance(event, Ready))
    assert plugin.bad_lines == []
    assert "connected, says a chatty library" in plugin.log


async def test_a_startup_failure_without_text_is_named_and_its_traceback_logged(tmp_path: Path) -> None:
    plugin = await start(tmp_path, fail_start=True)
    error = await plugin.wait_for(lambda event: isinstance(event, Error))
    with contextlib.suppress(ConnectionError):  # it may be gone already
        await plugin.send(Shutdown())  # Duragent stopping it meanwhile still sees the failure
    assert await plugin.wait_exit() == 1
    assert error == Error(code="startup_failed", message="TimeoutError", fatal=True)
    assert "Traceback" in plugin.log
    assert "raise asyncio.TimeoutError()" in plugin.log


async def test_a_command_still_running_at_stop_leaves_time_to_disconnect_before_the_kill(
    tmp_path: Path,
) -> None:
    plugin = await start(tmp_path)
    await plugin.wait_for(lambda event: isinstance(event, Ready))
    await plugin.send(SendMessage(request_id="r1", chat_id="!room", content="hang"))
    # Stopped as Duragent stops it: `shutdown`, SIGTERM, SIGKILL after its grace period.
    await plugin.send(Shutdown())
    plugin.process.terminate()
    code = await plugin.wait_exit(within=GatewayTiming().stop_grace)
    assert code == 0
    assert any(isinstance(event, ShutdownEvent) for event in plugin.events)
    assert "disconnected from the homeserver" in plugin.log


@pytest.mark.parametrize("stop", ["shutdown", "sigterm"])
async def test_a_plugin_stopped_while_connecting_exits_before_the_kill(tmp_path: Path, stop: str) -> None:
    plugin = await start(tmp_path, hang_start=True)
    await plugin.wait_for(lambda event: isinstance(event, Error))
    # Duragent sends both; each alone must do (with both, the SIGTERM may land after the plugin
    # is done and has given SIGTERM back its default action, making the exit code -15).
    if stop == "shutdown":
        await plugin.send(Shutdown())
    else:
        plugin.process.terminate()
    code = await plugin.wait_exit(within=GatewayTiming().stop_grace)
    assert code == 0
    assert not any(isinstance(event, Ready) for event in plugin.events)
    assert any(isinstance(event, ShutdownEvent) for event in plugin.events)
    assert "gave up connecting" in plugin.log


async def test_a_plugin_connecting_when_duragent_goes_away_exits(tmp_path: Path) -> None:
    plugin = await start(tmp_path, hang_start=True)
    await plugin.wait_for(lambda event: isinstance(event, Error))
    assert plugin.process.stdin is not None
    plugin.process.stdin.close()  # the server died: stdin reaches EOF
    assert await plugin.wait_exit(within=GatewayTiming().stop_grace) == 0
    assert "gave up connecting" in plugin.log


def test_an_event_holding_half_an_emoji_is_sent_with_a_replacement_character() -> None:
    # Platform JSON decoded with plain `json` keeps `"\\ud83d"` as a lone surrogate.
    event = MessageReceived(
        message_id="1",
        chat_id="!room",
        sender=Sender(id="@ana:example.org"),
        content=TextContent(text=json.loads('"cut \\ud83d"')),
        routing=Routing(channel="matrix", chat_type="dm", chat_id="!room", sender_id="@ana:example.org"),
    )
    line = encode(event)
    parsed = parse_event(line)
    assert isinstance(parsed, MessageReceived)
    assert parsed.text == "cut \ufffd"


async def test_a_misspelt_field_of_an_incoming_message_is_logged_naming_the_right_one(tmp_path: Path) -> None:
    control = EchoGatewayControl(tmp_path)
    command = (sys.executable, "-m", "duragent.testing.echo_gateway")
    async with await PluginProcess.start(*command, config=control.config()) as plugin:
        await plugin.wait_for(lambda event: isinstance(event, Ready))
        misspelt = {
            "type": "message_received",
            "message_id": "m1",
            "chat_id": "1",
            "sender": {"id": "100"},
            "content": {"type": "text", "text": "@bot hi"},
            "routing": {"channel": "echo", "chat_type": "group", "chat_id": "1", "sender_id": "100"},
            "mentions_bots": True,
        }
        (tmp_path / "inject" / "misspelt.json").write_text(json.dumps(misspelt))
        event = await plugin.wait_for(lambda event: isinstance(event, MessageReceived))
    assert isinstance(event, MessageReceived)
    assert event.message_id == "m1"
    expected = (
        "MessageReceived has no field `mentions_bots` (did you mean `mentions_bot`?): Duragent ignores it"
    )
    assert expected in plugin.log


async def test_the_echo_gateway_skips_a_bad_injected_event_and_emits_the_next(tmp_path: Path) -> None:
    control = EchoGatewayControl(tmp_path)
    command = (sys.executable, "-m", "duragent.testing.echo_gateway")
    async with await PluginProcess.start(*command, config=control.config()) as plugin:
        await plugin.wait_for(lambda event: isinstance(event, Ready))
        (tmp_path / "inject" / "0-bad.json").write_text('{"type": "message_received", "chat_id": "1"}')
        message_id = control.inject_message("1", "after the bad one")
        event = await plugin.wait_for(lambda event: isinstance(event, MessageReceived))
    assert isinstance(event, MessageReceived)
    assert event.message_id == message_id
    assert "skipping injected message_received 0-bad.json" in plugin.log


def test_the_capabilities_a_plugin_may_announce_are_those_the_protocol_page_lists() -> None:
    page = (Path(__file__).parents[2] / "docs" / "gateway-protocol.md").read_text()
    ready_row = next(line for line in page.splitlines() if line.startswith("| `ready` |"))
    listed = re.findall(r"`([a-z_]+)`", ready_row.split("capabilities[]", 1)[1])
    assert listed == list(CAPABILITIES)


async def test_the_testing_pages_plugin_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = (Path(__file__).parents[2] / "docs" / "testing.md").read_text()
    section = page.split("### Testing a gateway plugin", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/testing.md", "exec"), namespace)
    await namespace["test_a_reply_is_sent_to_the_chat"](tmp_path)  # type: ignore[operator]


@pytest.mark.parametrize(("said", "code"), [("lost", 1), ("revoked", 0)])
async def test_a_stop_the_plugin_asks_for_as_failed_exits_1_so_on_failure_restarts_it(
    tmp_path: Path, said: str, code: int
) -> None:
    """A receive loop that died of something unforeseen left a plugin that heard nothing: its
    request_stop exited 0, which `restart: on_failure` takes for a stop it meant."""
    async with await start(tmp_path) as plugin:
        await plugin.wait_for(lambda event: isinstance(event, Ready))
        await plugin.send(SendMessage(request_id="r1", chat_id="!room", content=said))
        await plugin.wait_for(lambda event: isinstance(event, ShutdownEvent))
        assert await plugin.wait_exit() == code
