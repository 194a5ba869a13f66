"""A message a plugin passes on while it stops (a webhook update it had already answered, say)
is kept in pending.json, not dropped with the plugin: the platform will not send it again.

The server runs in this process with a real plugin subprocess: the SDK echo plugin, told to pass
on one more message (with a file to store) from its `on_shutdown`.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

from aiohttp.test_utils import TestServer

from duragent.config import load_config
from duragent.server.app import create_app
from duragent.testing.echo_gateway import EchoGatewayControl
from duragent.testing.fake_llm import FakeLLMServer
from tests.e2e.server_harness import CHILD_ENV, write_workspace

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

ACCESS = """\
  access:
    dm: {policy: allowlist, allowlist: ["100"]}
"""

#: The echo plugin, passing on a voice note as it stops (the file takes a moment to store).
LAST_WORDS_PLUGIN = """\
import sys
from duragent.testing.echo_gateway import EchoGateway

class LastWords(EchoGateway):
    async def on_shutdown(self):
        await self.message_received(
            message_id="last-1",
            chat_id="c9",
            sender={"id": "100"},
            content={"type": "media", "media_type": "voice", "caption": "call the plumber"},
            text="call the plumber",
            routing={"channel": "echo", "chat_type": "dm", "chat_id": "c9", "sender_id": "100"},
            metadata={"file_path": sys.argv[1], "file_name": "note.ogg"},
        )
        await super().on_shutdown()

LastWords().run()
"""


async def test_a_message_passed_on_while_the_plugin_stops_is_kept_for_the_restart(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    config_path = write_workspace(tmp_path / "ws", fake_llm.url, git=False, agents={"helper": "continue"})
    agent_yaml = config_path.parent / "data" / "agents" / "helper" / "agent.yaml"
    agent_yaml.write_text(agent_yaml.read_text() + ACCESS)
    voice_note = tmp_path / "note.ogg"
    voice_note.write_bytes(b"\0" * (64 << 20))
    plugin = tmp_path / "last_words.py"
    plugin.write_text(LAST_WORDS_PLUGIN)
    control = EchoGatewayControl(tmp_path / "echo")
    config_path.write_text(
        config_path.read_text()
        + "gateways:\n  external:\n"
        + f"    - name: echo\n      command: {sys.executable}\n"
        + f"      args: [{plugin}, {voice_note}]\n"
        + f"      config: {{control_dir: {control.folder}}}\n"
        + "routes:\n  - match: {gateway: echo}\n    agent: helper\n"
    )
    config = load_config(config_path)
    app = create_app(config, env=CHILD_ENV, shutdown_grace=2, idle_ttl=timedelta(minutes=5))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    await control.wait_for_pids(1, within=30)

    await server.close()

    assert (control.folder / "clean_exit").exists()
    pending = json.loads((config.data_path / "gateways" / "pending.json").read_text())
    assert [entry["message"]["message_id"] for entry in pending] == ["last-1"]
    assert pending[0]["texts"][0].endswith("call the plumber")
