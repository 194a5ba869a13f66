"""A gateway plugin does not outlive a `duragent serve` killed with SIGKILL (Linux), even one that
neither exits when its stdin ends nor stops on SIGTERM: nobody would be left to stop it, and the
next start would run a second copy beside it (two bots answering one chat)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import psutil
import pytest

from duragent.testing.echo_gateway import EchoGatewayControl
from duragent.testing.fake_llm import FakeLLMServer
from tests.e2e.server_harness import start_serve, write_workspace
from tests.integration.mcp_helpers import ended
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin"]

#: The echo plugin, kept running after its stdin ends (a thread that is not a daemon) and deaf
#: to SIGTERM.
STUBBORN_PLUGIN = """\
import signal
import threading
import time

from duragent.testing.echo_gateway import EchoGateway

signal.signal(signal.SIGTERM, signal.SIG_IGN)
threading.Thread(target=time.sleep, args=(600,)).start()
EchoGateway().run()
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(sys.platform != "linux", reason="only Linux kills a child when its parent dies")
async def test_a_gateway_plugin_ends_when_serve_is_killed(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    config = write_workspace(tmp_path / "ws", fake_llm.url, git=False)
    plugin = tmp_path / "stubborn_plugin.py"
    plugin.write_text(STUBBORN_PLUGIN)
    control = EchoGatewayControl(tmp_path / "echo")
    config.write_text(
        config.read_text()
        + "gateways:\n  external:\n"
        + f"    - name: echo\n      command: {sys.executable}\n"
        + f"      args: [{plugin}]\n"
        + f"      config: {{control_dir: {control.folder}}}\n"
    )
    server = start_serve(config, tmp_path / "serve.log")
    pid: int | None = None
    try:
        [pid] = await control.wait_for_pids(1, within=30)
        assert psutil.Process(pid).ppid() == server.process.pid
        await asyncio.to_thread(server.kill)  # no shutdown: nothing of serve's own stops it
        await until(lambda: ended(pid), within=15)
    finally:
        if server.process.poll() is None:
            server.kill()
        if pid is not None and not ended(pid):
            psutil.Process(pid).kill()
