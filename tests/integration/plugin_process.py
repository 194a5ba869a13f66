"""A gateway plugin as a real subprocess, driven by protocol lines (shared by the plugin tests)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from duragent.gateways.sdk import CONFIGURE_ENV


class PluginProcess:
    """`python -m duragent.plugins.telegram` with pipes: send commands, await events."""

    def __init__(self, process: asyncio.subprocess.Process, stderr_path: Path):
        self.process = process
        self.stderr_path = stderr_path
        self.events: list[dict[str, Any]] = []
        self._requests = 0

    async def send(self, command: dict[str, Any]) -> None:
        """Write one command line."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    async def request(self, command: dict[str, Any], within: float = 10.0) -> dict[str, Any]:
        """Send a command with a fresh request_id; return its command_ok / command_error."""
        self._requests += 1
        request_id = f"r{self._requests}"
        await self.send({**command, "request_id": request_id})
        return await self.event(
            lambda e: e.get("request_id") == request_id and e["type"] != "pong", within=within
        )

    async def event(
        self, match: str | Callable[[dict[str, Any]], bool], within: float = 5.0
    ) -> dict[str, Any]:
        """The first event (already seen or next) of a type or matching a predicate."""
        predicate = (lambda e: e["type"] == match) if isinstance(match, str) else match
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            while True:
                for event in self.events:
                    if predicate(event):
                        self.events.remove(event)
                        return event
                line = await self.process.stdout.readline()
                if not line:
                    raise EOFError(f"plugin exited; stderr:\n{self.stderr_path.read_text()}")
                self.events.append(json.loads(line))

    async def stop(self) -> int:
        """Send `shutdown` and wait for the process to exit."""
        if self.process.returncode is None:
            with_pipe = self.process.stdin is not None and not self.process.stdin.is_closing()
            if with_pipe:
                await self.send({"type": "shutdown"})
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode or 0


async def start_plugin_process(
    module: str, config: dict[str, Any], tmp_path: Path, *, drop_env: tuple[str, ...] = ()
) -> PluginProcess:
    """`python -m <module>` with pipes, sent `configure` with `config` (not yet waited for `ready`)."""
    stderr_path = tmp_path / f"plugin-stderr-{time.monotonic_ns()}.log"
    env = {**os.environ, CONFIGURE_ENV: "1", "DURAGENT_LOG_LEVEL": "DEBUG"}
    for name in drop_env:
        env.pop(name, None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr_path.open("wb"),
        env=env,
    )
    plugin = PluginProcess(process, stderr_path)
    await plugin.send({"type": "configure", "config": config})
    return plugin


#: Seconds a plugin may take to announce `ready`: a bound, not a wait. Importing a platform
#: library (discord.py, slack-bolt) is seconds of CPU, much more on a loaded machine.
READY_WITHIN = 90.0


async def start_ready_plugin(
    module: str, config: dict[str, Any], tmp_path: Path, *, drop_env: tuple[str, ...] = ()
) -> PluginProcess:
    """`start_plugin_process`, then wait for its `ready` (killing it if that never comes)."""
    plugin = await start_plugin_process(module, config, tmp_path, drop_env=drop_env)
    try:
        await plugin.event("ready", within=READY_WITHIN)
    except BaseException:
        plugin.process.kill()  # no test owns it yet: it must not outlive the failure
        await plugin.process.wait()
        raise
    return plugin


def received_in(chat_id: str | int) -> Callable[[dict[str, Any]], bool]:
    """Matches `message_received` events from one chat."""
    return lambda event: event["type"] == "message_received" and event["chat_id"] == chat_id
