"""A tiny gateway plugin for tests, built on the SDK, driven through a control folder.

Run it as `python -m duragent.testing.echo_gateway` with `config: {control_dir: <folder>}`.
Tests use `EchoGatewayControl(folder)` to inject user messages and button presses (JSON files
dropped into `inject/`, which the plugin emits as events) and to read every command Duragent
sent (`commands.jsonl`). Switches in the config map make it misbehave on purpose:
`ready_delay` (seconds before `ready`), `ignore_ping`, `crash_on_send` (exit 3 on the first
`send_message` of the first run, before answering it), `ignore_sigterm`, `exit_after_ready`
(exit code right after `ready`), `fail_chat` (answer `command_error` for sends to that chat).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from duragent.gateways.protocol import (
    AnswerCallbackQuery,
    Command,
    EditMessage,
    SendMessage,
    SendTyping,
    encode,
    parse_command,
)
from duragent.gateways.sdk import GatewayPlugin, PlatformError
from duragent.ids import ulid


class EchoGateway(GatewayPlugin):
    """Records commands to a file and emits the events tests drop into a folder."""

    name = "echo"
    capabilities = ("typing", "reply", "inline_keyboard", "edit")

    def __init__(self) -> None:
        super().__init__()
        self.control: Path | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._sent = 0

    async def on_configure(self, config: dict[str, Any]) -> None:
        """Remember the control folder and record the pid and config for the test."""
        await super().on_configure(config)
        self.control = Path(str(config.get("control_dir") or os.environ["ECHO_GATEWAY_DIR"]))
        (self.control / "inject").mkdir(parents=True, exist_ok=True)
        with (self.control / "pids").open("a") as pids:
            pids.write(f"{os.getpid()}\n")
        (self.control / "config.json").write_text(json.dumps(config))
        if config.get("ignore_sigterm"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    async def on_start(self) -> None:
        """Wait `ready_delay`, then start watching the inject folder."""
        await asyncio.sleep(float(self.config.get("ready_delay", 0)))
        self._watcher = asyncio.create_task(self._watch())
        if "exit_after_ready" in self.config:
            code = int(self.config["exit_after_ready"])
            asyncio.get_running_loop().call_later(0.2, os._exit, code)

    def is_connected(self) -> bool:
        """Connected unless the test took the platform away (`EchoGatewayControl.disconnect`)."""
        return self.control is None or not (self.control / "disconnected").exists()

    async def on_send_message(self, cmd: SendMessage) -> str | None:
        """Record the message; optionally crash or fail first."""
        self._record(cmd)
        if self.config.get("crash_on_send") and self._first_run_marker():
            os._exit(3)
        if cmd.chat_id == self.config.get("fail_chat"):
            raise PlatformError("chat_not_found", f"no chat {cmd.chat_id}")
        self._sent += 1
        return f"m{self._sent}"

    async def on_send_typing(self, cmd: SendTyping) -> None:
        """Record the typing indicator."""
        self._record(cmd)

    async def on_edit_message(self, cmd: EditMessage) -> None:
        """Record the edit."""
        self._record(cmd)

    async def on_answer_callback_query(self, cmd: AnswerCallbackQuery) -> None:
        """Record the toast."""
        self._record(cmd)

    async def on_shutdown(self) -> None:
        """Stop watching and note the clean exit."""
        if self._watcher is not None:
            self._watcher.cancel()
        if self.control is not None:
            (self.control / "clean_exit").write_text(str(os.getpid()))

    def _first_run_marker(self) -> bool:
        assert self.control is not None
        marker = self.control / "crashed_once"
        if marker.exists():
            return False
        marker.write_text("1")
        return True

    def _record(self, cmd: Command) -> None:
        assert self.control is not None
        with (self.control / "commands.jsonl").open("ab") as out:
            out.write(encode(cmd))

    async def _watch(self) -> None:
        assert self.control is not None
        inject = self.control / "inject"
        while True:
            for path in sorted(inject.glob("*.json")):
                event = json.loads(path.read_text())
                path.unlink()
                kind = event.pop("type")
                try:
                    if kind == "message_received":
                        await self.message_received(**event)
                    elif kind == "callback_query":
                        await self.callback_query(**event)
                except (TypeError, ValueError) as exc:  # a bad event must not stop the ones after it
                    self.log.error("skipping injected %s %s: %s", kind, path.name, exc)
            await asyncio.sleep(0.02)


class EchoGatewayControl:
    """The test's side of the control folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "inject").mkdir(parents=True, exist_ok=True)

    def disconnect(self, gone: bool = True) -> None:
        """Have the plugin report its platform out of reach in `pong` (False: back again)."""
        marker = self.folder / "disconnected"
        if gone:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def config(self, **switches: Any) -> dict[str, Any]:
        """The `config:` map for duragent.yaml pointing the plugin at this folder."""
        return {"control_dir": str(self.folder), **switches}

    def gateways_yaml(self, name: str = "echo") -> str:
        """duragent.yaml's `gateways:` section running this plugin as gateway `name`."""
        return (
            "gateways:\n  external:\n"
            f"    - name: {name}\n      command: {sys.executable}\n"
            "      args: [-m, duragent.testing.echo_gateway]\n"
            f"      config: {{control_dir: {self.folder}}}\n"
        )

    def inject_message(
        self,
        chat_id: str,
        text: str,
        *,
        sender_id: str = "100",
        username: str | None = None,
        display_name: str | None = None,
        chat_type: str = "dm",
        mentions_bot: bool = False,
        reply_to_bot: bool = False,
        message_id: str | None = None,
        metadata: Any = None,
    ) -> str:
        """Make the plugin emit `message_received`; returns its message id."""
        message_id = message_id or ulid()
        event: dict[str, Any] = {
            "type": "message_received",
            "message_id": message_id,
            "chat_id": chat_id,
            "sender": {"id": sender_id, "username": username, "display_name": display_name},
            "content": {"type": "text", "text": text},
            "routing": {
                "channel": "echo",
                "chat_type": chat_type,
                "chat_id": chat_id,
                "sender_id": sender_id,
            },
            "mentions_bot": mentions_bot,
            "reply_to_bot": reply_to_bot,
        }
        if metadata is not None:
            event["metadata"] = metadata
        self._drop(event)
        return message_id

    def press_button(self, chat_id: str, message_id: str, data: str, *, sender_id: str = "100") -> str:
        """Make the plugin emit `callback_query`; returns its id."""
        query_id = ulid()
        self._drop(
            {
                "type": "callback_query",
                "callback_query_id": query_id,
                "chat_id": chat_id,
                "sender": {"id": sender_id},
                "message_id": message_id,
                "data": data,
            }
        )
        return query_id

    def commands(self) -> list[Command]:
        """Every command the plugin received, in order (across restarts)."""
        path = self.folder / "commands.jsonl"
        if not path.exists():
            return []
        return [parse_command(line) for line in path.read_bytes().splitlines() if line.strip()]

    def sent(self, chat_id: str | None = None) -> list[SendMessage]:
        """The `send_message` commands received (for one chat, or all)."""
        return [
            c
            for c in self.commands()
            if isinstance(c, SendMessage) and (chat_id is None or c.chat_id == chat_id)
        ]

    def pids(self) -> list[int]:
        """Pids of every run of the plugin, oldest first."""
        path = self.folder / "pids"
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    async def wait_for(
        self, predicate: Callable[[list[Command]], bool], within: float = 5.0
    ) -> list[Command]:
        """Poll the recorded commands until `predicate` holds; raises TimeoutError otherwise."""
        deadline = time.monotonic() + within
        while True:
            commands = self.commands()
            if predicate(commands):
                return commands
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {within}s; commands: {commands}")
            await asyncio.sleep(0.02)

    async def wait_for_pids(self, count: int, within: float = 10.0) -> list[int]:
        """Wait until the plugin has started `count` times."""
        deadline = time.monotonic() + within
        while len(pids := self.pids()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"plugin started {len(pids)} times, expected {count}")
            await asyncio.sleep(0.02)
        return pids

    def _drop(self, event: dict[str, Any]) -> None:
        # Write then rename, so the plugin never reads half a file.
        name = ulid()
        tmp = self.folder / "inject" / f".{name}.tmp"
        tmp.write_text(json.dumps(event))
        tmp.rename(self.folder / "inject" / f"{name}.json")


def main() -> None:
    """Entry point: `python -m duragent.testing.echo_gateway`."""
    EchoGateway().run()


if __name__ == "__main__":
    main()
