"""The gateway protocol models and the plugin SDK, run as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from duragent.gateways.protocol import (
    AuthRequired,
    CallbackQuery,
    CommandError,
    CommandOk,
    Configure,
    InlineButton,
    InlineKeyboard,
    MessageReceived,
    Ping,
    Pong,
    ProtocolError,
    QrCodeAuth,
    Ready,
    SendMessage,
    SendTyping,
    Shutdown,
    ShutdownEvent,
    TextContent,
    UnknownEvent,
    encode,
    parse_command,
    parse_event,
)
from duragent.gateways.sdk import CONFIGURE_ENV
from duragent.testing.echo_gateway import EchoGatewayControl

# Lines as the Rust Duragent's plugins and core write them (serde, `type` tag, flattened fields).
RUST_MESSAGE_RECEIVED = (
    b'{"type":"message_received","message_id":"42","chat_id":"-100123",'
    b'"sender":{"id":"7","username":"alice","display_name":"Alice A"},'
    b'"content":{"type":"text","text":"hello @bot"},'
    b'"routing":{"channel":"telegram","chat_type":"group","chat_id":"-100123","sender_id":"7",'
    b'"thread_id":"5"},"reply_to":null,"mentions_bot":true,"reply_to_bot":false,'
    b'"timestamp":"2025-01-01T10:00:00Z"}'
)
RUST_SEND_MESSAGE = (
    b'{"type":"send_message","request_id":"r1","chat_id":"42","content":"Command requires approval:",'
    b'"inline_keyboard":{"rows":[[{"text":"Allow Once","callback_data":"approve:allow_once"}]]}}'
)


def test_rust_message_received_line_parses_with_extra_routing_fields_kept() -> None:
    event = parse_event(RUST_MESSAGE_RECEIVED)
    assert isinstance(event, MessageReceived)
    assert event.text == "hello @bot"
    assert event.sender.label == "Alice A"
    assert event.mentions_bot is True
    assert event.routing.chat_type == "group"
    assert event.routing.model_dump()["thread_id"] == "5"


def test_rust_send_message_line_parses_and_round_trips() -> None:
    command = parse_command(RUST_SEND_MESSAGE)
    assert isinstance(command, SendMessage)
    assert command.inline_keyboard is not None
    assert command.inline_keyboard.rows[0][0].callback_data == "approve:allow_once"
    assert json.loads(encode(command)) == json.loads(RUST_SEND_MESSAGE)


@pytest.mark.parametrize(
    "message",
    [
        SendMessage(
            request_id="r",
            chat_id="c",
            content="hi",
            reply_to="9",
            inline_keyboard=InlineKeyboard(
                rows=[[InlineButton(text="Deny", callback_data="approve:x:deny")]]
            ),
        ),
        SendTyping(chat_id="c", duration=5),
        Ping(request_id="p"),
        Shutdown(),
        Configure(config={"bot_token": "t", "nested": {"a": [1, 2]}}),
    ],
)
def test_every_command_round_trips_through_one_line(message: object) -> None:
    line = encode(message)  # type: ignore[arg-type]
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert parse_command(line) == message


@pytest.mark.parametrize(
    "message",
    [
        Ready(gateway="telegram", capabilities=["typing", "reply"]),
        CallbackQuery(callback_query_id="q", chat_id="c", sender={"id": "1"}, message_id="m", data="d"),  # type: ignore[arg-type]
        CommandOk(request_id="r", message_id="55"),
        CommandError(request_id="r", code="rate_limited", message="slow down"),
        Pong(request_id="p", uptime_seconds=3, connected=True),
        ShutdownEvent(reason="bye"),
        AuthRequired(method=QrCodeAuth(qr_data="x", expires_in=60)),
        MessageReceived(
            message_id="1",
            chat_id="c",
            sender={"id": "1"},  # type: ignore[arg-type]
            content=TextContent(text="hi"),
            routing={"channel": "echo", "chat_type": "dm", "chat_id": "c", "sender_id": "1"},  # type: ignore[arg-type]
        ),
    ],
)
def test_every_event_round_trips_through_one_line(message: object) -> None:
    assert parse_event(encode(message)) == message  # type: ignore[arg-type]


def test_absent_optional_fields_are_left_out_of_the_line() -> None:
    body = json.loads(encode(SendMessage(request_id="r", chat_id="c", content="x")))
    assert body == {"type": "send_message", "request_id": "r", "chat_id": "c", "content": "x"}


def test_unknown_event_types_are_ignored_not_errors() -> None:
    event = parse_event(b'{"type":"reaction_added","emoji":"+1"}')
    assert isinstance(event, UnknownEvent)
    assert event.type == "reaction_added"


@pytest.mark.parametrize(
    "line", [b"not json", b"[1,2]", b'{"no_type":1}', b'{"type":"send_message"}', b'{"type":"warp"}']
)
def test_malformed_command_lines_raise_protocol_error(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_command(line)


@pytest.mark.parametrize("depth", [65, 5_000, 500_000])
def test_lines_nested_too_deep_are_a_protocol_error_not_a_recursion_error(depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    for line in (nested, b'{"type":"message_received","metadata":' + nested + b"}"):
        with pytest.raises(ProtocolError, match="nested deeper than 64 levels"):
            parse_event(line)
        with pytest.raises(ProtocolError, match="nested deeper than 64 levels"):
            parse_command(line)


def test_nesting_up_to_the_limit_is_fine() -> None:
    line = b'{"type":"reaction_added","x":' + b"[" * 63 + b"]" * 63 + b"}"
    assert isinstance(parse_event(line), UnknownEvent)


# ---------------------------------------------------------------- the SDK as a real subprocess


class PluginProcess:
    """The echo plugin speaking the protocol over real pipes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def send(self, raw: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(raw)
        await self.proc.stdin.drain()

    async def event(self, within: float = 5.0) -> object:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), within)
        assert line, "plugin closed stdout"
        return parse_event(line)


async def start_echo(control: EchoGatewayControl, **switches: object) -> PluginProcess:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "duragent.testing.echo_gateway",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, CONFIGURE_ENV: "1"},
    )
    plugin = PluginProcess(proc)
    await plugin.send(encode(Configure(config=control.config(**switches))))
    ready = await plugin.event()
    assert isinstance(ready, Ready)
    assert ready.gateway == "echo"
    return plugin


async def test_sdk_plugin_answers_commands_and_forwards_injected_messages(tmp_path: Path) -> None:
    control = EchoGatewayControl(tmp_path)
    plugin = await start_echo(control, fail_chat="nowhere")
    await plugin.send(encode(SendMessage(request_id="r1", chat_id="c1", content="hello")))
    assert await plugin.event() == CommandOk(request_id="r1", message_id="m1")
    await plugin.send(encode(SendMessage(request_id="r2", chat_id="nowhere", content="x")))
    error = await plugin.event()
    assert isinstance(error, CommandError)
    assert error.code == "chat_not_found"
    await plugin.send(encode(Ping(request_id="p1")))
    pong = await plugin.event()
    assert isinstance(pong, Pong)
    assert pong.request_id == "p1"
    assert pong.connected
    control.inject_message("c1", "hi there", sender_id="7")
    received = await plugin.event()
    assert isinstance(received, MessageReceived)
    assert received.text == "hi there"
    await plugin.send(encode(Shutdown()))
    assert isinstance(await plugin.event(), ShutdownEvent)
    assert await asyncio.wait_for(plugin.proc.wait(), 5) == 0
    assert [c.content for c in control.sent()] == ["hello", "x"]


async def test_sdk_skips_garbage_and_oversized_lines_without_dying(tmp_path: Path) -> None:
    control = EchoGatewayControl(tmp_path)
    plugin = await start_echo(control)
    await plugin.send(b"this is not json\n")
    await plugin.send(
        b'{"type":"send_message","request_id":"big","chat_id":"c","content":"' + b"x" * (2 << 20)
    )
    await plugin.send(b'"}\n')
    await plugin.send(encode(Ping(request_id="after")))
    pong = await plugin.event()
    assert isinstance(pong, Pong)
    assert pong.request_id == "after"
    assert plugin.proc.stdin is not None
    plugin.proc.stdin.close()  # EOF: Duragent went away
    assert isinstance(await plugin.event(), ShutdownEvent)
    assert await asyncio.wait_for(plugin.proc.wait(), 5) == 0
    assert control.sent() == []


async def test_sdk_shuts_down_gracefully_on_sigterm(tmp_path: Path) -> None:
    control = EchoGatewayControl(tmp_path)
    plugin = await start_echo(control)
    plugin.proc.terminate()
    event = await plugin.event()
    assert isinstance(event, ShutdownEvent)
    assert event.reason == "SIGTERM"
    assert await asyncio.wait_for(plugin.proc.wait(), 5) == 0
    assert (tmp_path / "clean_exit").exists()


async def test_commands_for_one_chat_are_handled_in_order(tmp_path: Path) -> None:
    control = EchoGatewayControl(tmp_path)
    plugin = await start_echo(control)
    lines = b"".join(
        encode(SendMessage(request_id=f"r{i}", chat_id="c", content=f"part {i}")) for i in range(20)
    )
    await plugin.send(lines)
    acks = [await plugin.event() for _ in range(20)]
    assert [a.request_id for a in acks if isinstance(a, CommandOk)] == [f"r{i}" for i in range(20)]
    assert [c.content for c in control.sent("c")] == [f"part {i}" for i in range(20)]
    await plugin.send(encode(Shutdown()))
    await asyncio.wait_for(plugin.proc.wait(), 5)


def test_a_lone_surrogate_in_a_plugin_line_becomes_a_replacement_character() -> None:
    from duragent.gateways.protocol import parse_event

    line = b'{"type": "ready", "gateway": "x\\ud83d", "version": "1", "capabilities": []}'
    event = parse_event(line)
    assert event.model_dump()["gateway"] == "x\ufffd"
