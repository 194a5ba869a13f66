"""The gateway manager against real plugin subprocesses (the SDK echo plugin and raw scripts)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from duragent.config import ExternalGatewayConfig
from duragent.gateways.manager import GatewayManager, GatewayTiming, PluginSupervisor
from duragent.gateways.protocol import CommandOk, Event, MessageReceived, SendMessage
from duragent.testing.echo_gateway import EchoGatewayControl

FAST = GatewayTiming(
    ready_timeout=5.0,
    ping_interval=0.2,
    pong_timeout=0.5,
    backoff_initial=0.05,
    backoff_max=0.2,
    healthy_after=30.0,
    crash_loop_failures=3,
    crash_loop_window=30.0,
    stop_grace=1.0,
)


def echo_spec(
    control: EchoGatewayControl, restart: str = "on_failure", **switches: Any
) -> ExternalGatewayConfig:
    return ExternalGatewayConfig(
        name="echo",
        command=sys.executable,
        args=["-m", "duragent.testing.echo_gateway"],
        config=control.config(**switches),
        restart=restart,  # type: ignore[arg-type]
    )


def script_spec(tmp_path: Path, body: str, restart: str = "never") -> ExternalGatewayConfig:
    script = tmp_path / "plugin.py"
    script.write_text(textwrap.dedent(body))
    return ExternalGatewayConfig(name="raw", command=sys.executable, args=[str(script)], restart=restart)  # type: ignore[arg-type]


class Recorder:
    """The router's seat: every event the manager forwards."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Event]] = []
        self.restarts: list[str] = []

    async def __call__(self, gateway: str, event: Event) -> None:
        self.events.append((gateway, event))

    def restarted(self, name: str) -> None:
        self.restarts.append(name)


async def wait_until(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def manager_for(
    spec: ExternalGatewayConfig, recorder: Recorder, timing: GatewayTiming = FAST
) -> GatewayManager:
    return GatewayManager([spec], recorder, base_dir=Path.cwd(), timing=timing, on_restart=recorder.restarted)


async def test_plugin_is_configured_becomes_ready_and_delivers_both_ways(tmp_path: Path) -> None:
    control = EchoGatewayControl(tmp_path)
    recorder = Recorder()
    manager = manager_for(echo_spec(control), recorder)
    manager.start()
    plugin = manager.plugin("echo")
    try:
        await wait_until(lambda: plugin.status.state == "ready")
        assert plugin.status.capabilities == ["typing", "reply", "inline_keyboard", "edit"]
        future = await manager.send("echo", SendMessage(request_id="r1", chat_id="c", content="hi"))
        assert future is not None
        assert await asyncio.wait_for(future, 5) == CommandOk(request_id="r1", message_id="m1")
        assert plugin.outbox == []
        control.inject_message("c", "hello", sender_id="9")
        await wait_until(lambda: recorder.events)
        gateway, event = recorder.events[0]
        assert gateway == "echo"
        assert isinstance(event, MessageReceived)
        assert event.text == "hello"
    finally:
        await manager.stop()
    assert (tmp_path / "clean_exit").exists()
    assert plugin.status.state == "stopped"


async def test_a_ready_plugin_that_lost_its_platform_says_so_until_it_is_back(tmp_path: Path) -> None:
    """`gateway list` said `ready` through a Discord outage: nothing showed the bot was deaf."""
    control = EchoGatewayControl(tmp_path)
    manager = manager_for(echo_spec(control), Recorder())
    manager.start()
    plugin = manager.plugin("echo")
    try:
        await wait_until(lambda: plugin.status.connected is True)
        control.disconnect()
        await wait_until(lambda: plugin.status.connected is False)
        assert plugin.status.state == "ready"
        assert plugin.status.to_json()["connected"] is False
        control.disconnect(gone=False)
        await wait_until(lambda: plugin.status.connected is True)
    finally:
        await manager.stop()


async def test_a_plugin_not_ready_in_time_is_killed_and_reported(tmp_path: Path) -> None:
    control = EchoGatewayControl(tmp_path)
    recorder = Recorder()
    timing = GatewayTiming(ready_timeout=0.5, stop_grace=1.0)
    manager = manager_for(echo_spec(control, restart="never", ready_delay=30), recorder, timing)
    manager.start()
    plugin = manager.plugin("echo")
    try:
        await wait_until(lambda: plugin.status.state == "stopped", within=10)
        assert plugin.status.last_error == "no ready within 0.5s"
    finally:
        await manager.stop()


async def test_a_plugin_never_ready_is_started_again_not_given_up_as_a_crash_loop(tmp_path: Path) -> None:
    # A platform that silently drops packets (or never sends its READY) keeps a plugin starting:
    # after a power cut that is waited out like a platform out of reach, not a crash loop.
    control = EchoGatewayControl(tmp_path)
    recorder = Recorder()
    timing = GatewayTiming(
        ready_timeout=0.3, backoff_initial=0.05, backoff_max=0.1, crash_loop_failures=2, stop_grace=1.0
    )
    manager = manager_for(echo_spec(control, restart="always", ready_delay=30), recorder, timing)
    manager.start()
    plugin = manager.plugin("echo")
    try:
        await wait_until(
            lambda: plugin.status.restarts >= 3 or plugin.status.state == "crash_loop", within=20
        )
        assert plugin.status.state != "crash_loop"
        assert plugin.status.last_error == "no ready within 0.3s"
        assert manager.healthy
    finally:
        await manager.stop()


@pytest.mark.slow
async def test_a_crashing_plugin_is_restarted_then_reported_as_a_crash_loop(tmp_path: Path) -> None:
    control = EchoGatewayControl(tmp_path)
    recorder = Recorder()
    manager = manager_for(echo_spec(control, exit_after_ready=3), recorder)
    manager.start()
    plugin = manager.plugin("echo")
    try:
        await wait_until(lambda: plugin.status.state == "crash_loop", within=20)
        assert len(control.pids()) == 3
        assert plugin.status.restarts == 2
        assert recorder.restarts == ["echo", "echo"]
        assert plugin.status.last_error == "exited with code 3"
        assert not manager.healthy
        await asyncio.sleep(0.5)
        assert len(control.pids()) == 3, "a crash loop must stop restarting"
    finally:
        await manager.stop()


async def test_restart_never_leaves_a_crashed_plugin_stopped(tmp_path: Path) -> None:
    control = EchoGatewayControl(tmp_path)
    recorder = Recorder()
    manager = manager_for(echo_spec(control, restart="never", exit_after_ready=4), recorder)
    manager.start()
    plugin = manager.plugin("echo")
    try:
        await wait_until(lambda: plugin.status.state == "stopped")
        assert plugin.status.last_error == "exited with code 4"
        assert plugin.status.restarts == 0
    finally:
        await manager.stop()


async def test_reply_owed_to_a_crashed_plugin_is_resent_after_restart(tmp_path: Path) -> None:
    control = EchoGatewayControl(tmp_path)
    recorder = Recorder()
    manager = manager_for(echo_spec(control, crash_on_send=True), recorder)
    manager.start()
    plugin = manager.plugin("echo")
    try:
        await wait_until(lambda: plugin.status.state == "ready")
        future = await manager.send("echo", SendMessage(request_id="owed", chat_id="c", content="reply"))
        assert future is not None
        result = await asyncio.wait_for(future, 10)
        assert isinstance(result, CommandOk)
        assert len(control.pids()) == 2
        assert [c.request_id for c in control.sent("c")] == ["owed", "owed"]
        assert plugin.outbox == []
    finally:
        await manager.stop()


PLUGIN_IGNORING_PINGS = """
    import json, sys
    ready = {"type": "ready", "gateway": "raw", "version": "v1alpha1", "capabilities": []}
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        pass
"""


async def test_a_plugin_that_stops_answering_pings_is_restarted(tmp_path: Path) -> None:
    recorder = Recorder()
    manager = manager_for(script_spec(tmp_path, PLUGIN_IGNORING_PINGS, restart="always"), recorder)
    manager.start()
    plugin = manager.plugin("raw")
    try:
        await wait_until(lambda: plugin.status.restarts >= 1, within=10)
        assert plugin.status.last_error == "no pong within 0.5s"
    finally:
        await manager.stop()


PLUGIN_IGNORING_SIGTERM = """
    import json, signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(json.dumps({"type": "ready", "gateway": "raw"}), flush=True)
    sys.stdin.close()
    time.sleep(60)
"""


async def test_a_plugin_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    recorder = Recorder()
    timing = GatewayTiming(ping_interval=60, stop_grace=1.0)
    manager = manager_for(script_spec(tmp_path, PLUGIN_IGNORING_SIGTERM), recorder, timing)
    manager.start()
    plugin: PluginSupervisor = manager.plugin("raw")
    await wait_until(lambda: plugin.status.state == "ready")
    pid = plugin.status.pid
    assert pid is not None
    started = time.monotonic()
    await manager.stop()
    assert 0.9 <= time.monotonic() - started < 4
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


SERVER_HOLDING_A_PLUGIN = """
    import asyncio, sys
    from pathlib import Path
    from duragent.config import ExternalGatewayConfig
    from duragent.gateways.manager import GatewayManager

    async def ignore(gateway, event):
        pass

    async def main():
        spec = ExternalGatewayConfig(
            name="echo", command=sys.executable, args=["-m", "duragent.testing.echo_gateway"],
            config={"control_dir": sys.argv[1]},
        )
        GatewayManager([spec], ignore, base_dir=Path.cwd()).start()
        await asyncio.sleep(60)

    asyncio.run(main())
"""


@pytest.mark.slow
async def test_plugins_die_when_the_server_is_killed(tmp_path: Path) -> None:
    control = EchoGatewayControl(tmp_path / "control")
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent(SERVER_HOLDING_A_PLUGIN))
    server = await asyncio.create_subprocess_exec(sys.executable, str(script), str(control.folder))
    try:
        (pid,) = await control.wait_for_pids(1)
        server.send_signal(signal.SIGKILL)
        await asyncio.wait_for(server.wait(), 5)
        deadline = time.monotonic() + 5
        while _alive(pid):
            assert time.monotonic() < deadline, f"plugin {pid} outlived the server"
            await asyncio.sleep(0.05)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by init) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"


class SlowRecorder(Recorder):
    """A router whose handling of chat `slow` takes longer than a ping round trip may."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def __call__(self, gateway: str, event: Event) -> None:
        if isinstance(event, MessageReceived) and event.chat_id == "slow" and event.text == "first":
            await asyncio.sleep(self.seconds)
        self.events.append((gateway, event))


async def test_slow_event_handling_does_not_get_a_healthy_plugin_restarted(tmp_path: Path) -> None:
    control = EchoGatewayControl(tmp_path)
    recorder = SlowRecorder(seconds=1.5)  # FAST: a ping every 0.2s, 0.5s to answer
    manager = manager_for(echo_spec(control, restart="always"), recorder)
    manager.start()
    plugin = manager.plugin("echo")
    try:
        await wait_until(lambda: plugin.status.state == "ready")
        control.inject_message("slow", "first")
        control.inject_message("slow", "second")
        control.inject_message("other", "meanwhile")
        await wait_until(lambda: [e.text for _, e in recorder.events] == ["meanwhile"])  # type: ignore[union-attr]
        await wait_until(lambda: len(recorder.events) == 3)
        # one chat's events keep their order; another chat does not wait behind it
        assert [e.text for _, e in recorder.events] == ["meanwhile", "first", "second"]  # type: ignore[union-attr]
        assert plugin.status.restarts == 0
        assert plugin.status.state == "ready"
        assert plugin.status.last_error is None
    finally:
        await manager.stop()


PLUGIN_SENDING_BAD_LINES_FIRST = """
    import json, sys, time
    bad = int(sys.argv[1])
    print("[" * 100_000 + "]" * 100_000, flush=True)  # deep nesting: a RecursionError in json today
    print('{"type": "message_received", "a": ' + "[" * 70 + "1" + "]" * 70 + "}", flush=True)
    for n in range(bad):
        print("not json", n, flush=True)
    print('{"type": "ready", "gateway": "raw", "version": "v1alpha1", "capabilities": []}', flush=True)
    for line in sys.stdin:
        pass
"""


async def test_bad_lines_are_skipped_and_logged_a_few_times_and_ready_still_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = script_spec(tmp_path, PLUGIN_SENDING_BAD_LINES_FIRST)
    spec = spec.model_copy(update={"args": [*spec.args, "5000"]})
    recorder = Recorder()
    manager = manager_for(spec, recorder)
    manager.start()
    plugin = manager.plugin("raw")
    try:
        with caplog.at_level("WARNING", logger="duragent.gateways.manager"):
            await wait_until(lambda: plugin.status.state == "ready", within=20)
        assert plugin.status.restarts == 0
        warnings = [r.getMessage() for r in caplog.records if r.name == "duragent.gateways.manager"]
        assert any("nested deeper than" in message for message in warnings), warnings
        assert len(warnings) <= 20, f"a flood of bad lines is logged a few times, not {len(warnings)}"
    finally:
        await manager.stop()
    summaries = [r.getMessage() for r in caplog.records if "more bad lines" in r.getMessage()]
    assert summaries, "the lines not logged one by one are counted"


PLUGIN_IGNORING_SIGTERM_WITH_A_CHILD = """
    import json, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(json.dumps({"type": "ready", "gateway": "raw"}), flush=True)
    time.sleep(600)
"""

SERVER_HOLDING_A_STUBBORN_PLUGIN = """
    import asyncio, sys
    from pathlib import Path
    from duragent.config import ExternalGatewayConfig
    from duragent.gateways.manager import GatewayManager

    async def ignore(gateway, event):
        pass

    async def main():
        spec = ExternalGatewayConfig(name="raw", command=sys.executable, args=[sys.argv[1]])
        manager = GatewayManager([spec], ignore, base_dir=Path.cwd())
        manager.start()
        plugin = manager.plugin("raw")
        while plugin.status.state != "ready":
            await asyncio.sleep(0.01)
        print(plugin.status.pid, flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
"""


async def test_a_plugin_ignoring_sigterm_dies_when_the_server_is_killed(tmp_path: Path) -> None:
    plugin_script = tmp_path / "plugin.py"
    plugin_script.write_text(textwrap.dedent(PLUGIN_IGNORING_SIGTERM_WITH_A_CHILD))
    server_script = tmp_path / "server.py"
    server_script.write_text(textwrap.dedent(SERVER_HOLDING_A_STUBBORN_PLUGIN))
    server = await asyncio.create_subprocess_exec(
        sys.executable, str(server_script), str(plugin_script), stdout=asyncio.subprocess.PIPE
    )
    assert server.stdout is not None
    try:
        pid = int(await asyncio.wait_for(server.stdout.readline(), 30))
        assert _alive(pid)
        server.send_signal(signal.SIGKILL)
        await asyncio.wait_for(server.wait(), 5)
        await wait_until(lambda: not _alive(pid), within=10)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()


PLUGIN_REFUSED_ITS_TOKEN = """
    import json, sys
    refused = "the platform refused the token in `bot_token`"
    error = {"type": "error", "code": "startup_failed", "message": refused, "fatal": True}
    print(json.dumps(error), flush=True)
    sys.exit(1)
"""


@pytest.mark.parametrize("restart", ["on_failure", "never"])
async def test_a_fatal_error_is_logged_once_per_attempt_with_what_follows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, restart: str
) -> None:
    """A wrong token is the operator's to fix: one error line per attempt says it (and the
    restart it leads to), not one per layer it passed through."""
    recorder = Recorder()
    manager = manager_for(script_spec(tmp_path, PLUGIN_REFUSED_ITS_TOKEN, restart=restart), recorder)
    with caplog.at_level("INFO", logger="duragent.gateways.manager"):
        manager.start()
        plugin = manager.plugin("raw")
        try:
            ended = "crash_loop" if restart == "on_failure" else "stopped"
            await wait_until(lambda: plugin.status.state == ended, within=20)
        finally:
            await manager.stop()

    said = [record for record in caplog.records if "refused the token" in record.getMessage()]
    assert len(said) == plugin.status.restarts + 1, [record.getMessage() for record in said]
    assert {record.levelname for record in said} == {"ERROR"}
    if restart == "never":
        assert "stopped (exit 1; restart: never)" in said[0].getMessage()
    else:
        assert "restarting in" in said[0].getMessage()
        assert "not restarting" in said[-1].getMessage()
