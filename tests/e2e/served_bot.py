"""A chat bot as a user runs it: `duragent serve` as a real process with one gateway plugin,
its agent talking to the fake LLM. Tests talk to the bot through the platform's fake and read
the server's state through its admin API. Platform harnesses (`telegram_bot.py`,
`discord_bot.py`) subclass `ServedBot` with their fake.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from duragent.testing.fake_llm import FakeLLMServer, RecordedRequest
from tests.e2e.server_harness import ServeProcess, start_serve

#: Importing a platform library (aiogram, discord.py) alone takes seconds of CPU on a loaded machine.
PLUGIN_START_WITHIN = 60.0


def edit_file(path: Path, old: str, new: str) -> None:
    """Replace `old` (which must be there) once in a file the test set up."""
    text = path.read_text()
    assert old in text, f"{path} no longer contains {old!r}; the test's edit needs updating"
    path.write_text(text.replace(old, new, 1))


def prepare_agent(root: Path, llm: FakeLLMServer, groups: list[str]) -> None:
    """Point the agent `init` wrote at the fake model, let it use bash (asking first), allow `groups`."""
    agent = root / ".duragent" / "agents" / "assistant" / "agent.yaml"
    edit_file(agent, "    # base_url: http://127.0.0.1:8000/v1", f"    base_url: {llm.url}  #")
    # continue: the agent keeps working (and may notify the chat) while nobody is attached.
    edit_file(agent, "    on_disconnect: pause\n", "    on_disconnect: continue\n")
    edit_file(agent, "      - notify_user\n", "      - notify_user\n      - bash\n")  # asks before running
    entries = ", ".join(f'"{group}"' for group in groups)
    edit_file(agent, "      allowlist: []", f"      allowlist: [{entries}]")
    # A short debounce window keeps each turn quick; the behaviour is the same.
    edit_file(agent, "      activation: mention\n", "      activation: mention\n    debounce: 200ms\n")


def init_chat_workspace(
    root: Path,
    platform: str,
    owner_id: str,
    api_base: str,
    llm: FakeLLMServer,
    groups: list[str],
    **config: Any,
) -> Path:
    """`duragent init --<platform>` as a user runs it, then pointed at the fakes; returns duragent.yaml.

    The plugin's `api_base` points at the platform's fake, `config` adds plugin settings, the
    agent talks to `llm` and allows the chats `groups` (`<platform>:<chat id>`).
    """
    result = subprocess.run(
        [
            *(sys.executable, "-m", "duragent", "init", str(root), "--yes"),
            *("--provider", "openai", "--model", "gpt-test", f"--{platform}-owner", owner_id),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    title = platform.capitalize()
    assert f"{title}: the bot answers direct messages from user {owner_id} only." in result.stdout
    duragent_yaml = root / "duragent.yaml"
    settings = "".join(f"        {key}: {value}\n" for key, value in {"api_base": api_base, **config}.items())
    edit_file(
        duragent_yaml,
        "      restart: always\n      config:\n",
        "      restart: always\n      config:\n" + settings,
    )
    prepare_agent(root, llm, [f"{platform}:{group}" for group in groups])
    return duragent_yaml


def served_env(**tokens: str) -> dict[str, str]:
    """What the server's environment holds on a home server: the model's API key and the bot's
    `tokens` (`TELEGRAM_BOT_TOKEN=...`), with this venv's plugin commands on PATH."""
    venv_bin = str(Path(sys.executable).parent)  # where `duragent-gateway-<platform>` is installed
    return {"OPENAI_API_KEY": "sk-test", **tokens, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}


@dataclass
class ServedBot:
    """The workspace, the running `duragent serve` with one chat gateway, and the fake model."""

    config: Path
    llm: FakeLLMServer
    logs: Path
    env: dict[str, str]
    server: ServeProcess | None = None
    starts: int = 0

    async def start(self) -> None:
        """Start `duragent serve` and wait until its gateway plugin is ready."""
        self.starts += 1
        log_path = self.logs / f"serve-{self.starts}.log"
        # In a thread: the fakes this server's plugin and agent call run on this event loop.
        self.server = await asyncio.to_thread(start_serve, self.config, log_path, env=self.env)
        try:
            await self.wait_until_ready(lambda status: True)
        except BaseException:
            # A fixture whose set-up fails never reaches its teardown: leave no server behind.
            await self.kill()
            raise

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
        """The plugin's status as `GET /api/admin/v1/gateways` reports it."""
        assert self.server is not None
        async with (
            aiohttp.ClientSession(headers=self.server.headers) as http,
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
        try:
            return await self.llm.wait_until(
                lambda: found[0] if (found := self.requests_mentioning(marker)) else None, within
            )
        except TimeoutError:
            raise AssertionError(f"no LLM request mentioning {marker!r} within {within}s") from None

    def requests_mentioning(self, marker: str) -> list[RecordedRequest]:
        """The LLM requests whose messages contain `marker` anywhere."""
        return [r for r in self.llm.requests if any(marker in str(m.get("content")) for m in r.messages)]
