"""A Telegram bot as a user runs it: `duragent init --telegram`, then `duragent serve` as a real
process, with its plugin talking to the fake Bot API and its agent to the fake LLM.

`TelegramBot` owns the workspace and the server process; tests talk to the bot through the
fake Bot API (`inject_message`, `wait_for_message`) and read the server's state through its admin
API. Starting a server costs seconds (the plugin imports aiogram), so a test module shares one.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from duragent.testing.fake_llm import FakeLLMServer, RecordedRequest
from duragent.testing.fake_telegram import FakeTelegramBotAPI
from tests.e2e.server_harness import ServeProcess, start_serve

OWNER_ID = 1001
OWNER = {"id": OWNER_ID, "first_name": "Ada", "last_name": "Lovelace", "username": "ada"}
#: Group chats the owner added to the agent's allowlist, in the `telegram:<chat id>` form the
#: comment written by `init --telegram` suggests.
ALLOWED_GROUPS = (-100777, -100778, -100779, -100780)
#: Importing aiogram alone takes seconds of CPU on a loaded machine.
PLUGIN_START_WITHIN = 60.0


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path} no longer contains {old!r}; the test's edit needs updating"
    path.write_text(text.replace(old, new, 1))


def create_workspace(root: Path, telegram: FakeTelegramBotAPI, llm: FakeLLMServer) -> Path:
    """`duragent init --telegram` as a user runs it, then pointed at the fakes; returns duragent.yaml."""
    import subprocess

    result = subprocess.run(
        [
            *(sys.executable, "-m", "duragent", "init", str(root), "--yes"),
            *("--provider", "openai", "--model", "gpt-test", "--telegram-owner", str(OWNER_ID)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = root / "duragent.yaml"
    # The fake Bot API stands in for api.telegram.org (as a self-hosted Bot API server would);
    # short long-polls keep shutdowns quick.
    _edit(
        config,
        "      restart: always\n      config:\n",
        "      restart: always\n      config:\n"
        f"        api_base: {telegram.api_base}\n"
        "        poll_timeout: 1\n",
    )
    agent = root / ".duragent" / "agents" / "assistant" / "agent.yaml"
    _edit(agent, "    # base_url: http://127.0.0.1:8000/v1", f"    base_url: {llm.url}  #")
    # continue: the agent keeps working (and may notify the chat) while nobody is attached.
    _edit(agent, "    on_disconnect: pause\n", "    on_disconnect: continue\n")
    _edit(agent, "      - notify_user\n", "      - notify_user\n      - bash\n")  # asks before running
    groups = ", ".join(f'"telegram:{chat}"' for chat in ALLOWED_GROUPS)
    _edit(agent, "      allowlist: []", f"      allowlist: [{groups}]")
    # A short debounce window keeps each turn quick; the behaviour is the same.
    _edit(agent, "      activation: mention\n", "      activation: mention\n    debounce: 200ms\n")
    return config


@dataclass
class TelegramBot:
    """The workspace, the running `duragent serve` and the fakes it talks to."""

    config: Path
    telegram: FakeTelegramBotAPI
    llm: FakeLLMServer
    logs: Path
    env: dict[str, str]
    server: ServeProcess | None = None
    starts: int = 0

    async def start(self) -> None:
        """Start `duragent serve` and wait until its Telegram plugin is ready."""
        self.starts += 1
        log_path = self.logs / f"serve-{self.starts}.log"
        # In a thread: the fakes this server's plugin and agent call run on this event loop.
        self.server = await asyncio.to_thread(start_serve, self.config, log_path, env=self.env)
        await self.wait_until_ready(lambda status: True)

    async def stop(self) -> int:
        """SIGTERM the server and wait for it to exit; returns its exit code."""
        assert self.server is not None
        server, self.server = self.server, None
        return await asyncio.to_thread(server.terminate, 30)

    async def kill(self) -> None:
        """SIGKILL the server, as a crash would; its plugin gets SIGTERM from the kernel."""
        assert self.server is not None
        server, self.server = self.server, None
        await asyncio.to_thread(server.kill)

    @property
    def url(self) -> str:
        """The running server's base URL."""
        assert self.server is not None
        return self.server.url

    def log(self) -> str:
        """What every server started so far (and its plugins) logged."""
        return "\n".join(path.read_text() for path in sorted(self.logs.glob("serve-*.log")))

    async def gateway(self) -> dict[str, Any]:
        """The Telegram plugin's status as `GET /api/admin/v1/gateways` reports it."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/api/admin/v1/gateways") as response,
        ):
            assert response.status == 200, await response.text()
            body = await response.json()
        [gateway] = body["gateways"]
        status: dict[str, Any] = gateway
        return status

    async def wait_until_ready(
        self, condition: Callable[[dict[str, Any]], bool], within: float = PLUGIN_START_WITHIN
    ) -> dict[str, Any]:
        """Poll the plugin's status until it is `ready` and `condition` holds."""
        deadline = time.monotonic() + within
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.server is not None
            if self.server.process.poll() is not None:
                raise AssertionError(f"duragent serve exited:\n{self.log()}")
            status = await self.gateway()
            if status["state"] == "ready" and condition(status):
                return status
            await asyncio.sleep(0.1)
        raise AssertionError(f"plugin not ready within {within}s (last status {status}):\n{self.log()}")

    async def wait_for_log(self, text: str, within: float = 10.0) -> None:
        """Wait until the server's log contains `text`."""
        deadline = time.monotonic() + within
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {within}s:\n{self.log()}")
            await asyncio.sleep(0.05)

    async def wait_for_request(self, marker: str, within: float = 20.0) -> RecordedRequest:
        """The first LLM request mentioning `marker`, waiting for it to arrive."""
        for _ in range(int(within / 0.05)):
            if found := self.requests_mentioning(marker):
                return found[0]
            await asyncio.sleep(0.05)  # the fake LLM records requests in a list: poll it
        raise AssertionError(f"no LLM request mentioning {marker!r} within {within}s")

    def requests_mentioning(self, marker: str) -> list[RecordedRequest]:
        """The LLM requests whose messages contain `marker` anywhere."""
        return [r for r in self.llm.requests if any(marker in str(m.get("content")) for m in r.messages)]


def server_env(telegram: FakeTelegramBotAPI) -> dict[str, str]:
    """What the server's environment holds on a home server: the API key and the bot token."""
    venv_bin = str(Path(sys.executable).parent)  # where `duragent-gateway-telegram` is installed
    return {
        "OPENAI_API_KEY": "sk-test",
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
    }
