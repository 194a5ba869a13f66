"""pending.json costs one flush to the disk per chat message, not one to add it and one to drop it.

The server runs in this process (so its fsyncs can be counted) with the SDK echo plugin as a
real subprocess and the fake LLM.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from duragent.config import load_config
from duragent.gateways.protocol import Command, SendMessage
from duragent.server.app import create_app
from duragent.testing.echo_gateway import EchoGatewayControl
from duragent.testing.fake_llm import FakeLLMServer
from tests.e2e.server_harness import CHILD_ENV, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

OWNER = "100"
ACCESS = """\
  access:
    dm: {policy: allowlist, allowlist: ["100"]}
    debounce: 0s
"""


def sends(chat: str, count: int = 1) -> Callable[[list[Command]], bool]:
    def condition(commands: list[Command]) -> bool:
        return sum(isinstance(c, SendMessage) and c.chat_id == chat for c in commands) >= count

    return condition


@pytest.fixture
def pending_flushes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files of `<data_dir>/gateways/` flushed to the disk (fsync) from now on."""
    flushed: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        with contextlib.suppress(OSError):  # a descriptor /proc cannot name
            target = os.readlink(f"/proc/self/fd/{fd}")
            if "/gateways/" in target:
                flushed.append(Path(target).name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return flushed


@pytest.fixture
async def control(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[EchoGatewayControl]:
    """The echo plugin's control folder, its server running in this process."""
    config_path = write_workspace(tmp_path / "ws", fake_llm.url, git=False, agents={"helper": "continue"})
    agent_yaml = config_path.parent / "data" / "agents" / "helper" / "agent.yaml"
    agent_yaml.write_text(agent_yaml.read_text() + ACCESS)
    control = EchoGatewayControl(tmp_path / "echo")
    config_path.write_text(
        config_path.read_text()
        + control.gateways_yaml()
        + "routes:\n  - match: {gateway: echo}\n    agent: helper\n"
    )
    config = load_config(config_path)
    app = create_app(config, env=CHILD_ENV, shutdown_grace=2, idle_ttl=timedelta(minutes=5))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    await control.wait_for_pids(1, within=30)
    yield control
    await server.close()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds flushed files through /proc")
async def test_each_chat_message_flushes_pending_json_once(
    control: EchoGatewayControl, fake_llm: FakeLLMServer, pending_flushes: list[str]
) -> None:
    for number in range(1, 4):
        control.inject_message("c1", f"message {number}", sender_id=OWNER)
        await control.wait_for(sends("c1", number), within=20)  # type: ignore[arg-type]

    assert [c.content for c in control.sent("c1")] == [
        "echo: message 1",
        "echo: message 2",
        "echo: message 3",
    ]
    # (each written under a temporary name, then renamed: `pending.json.<id>.tmp`)
    assert len([name for name in pending_flushes if name.startswith("pending.json.")]) == 3
    # and which session the chat talks in, once, when its first message made it
    assert len([name for name in pending_flushes if name.startswith("sessions.json.")]) == 1
    assert len(pending_flushes) == 4
