"""Gateway plugin subprocesses: start, configure, watch, restart, and stop them.

One `PluginSupervisor` per `gateways.external[]` entry runs the plugin, sends `configure`,
waits for `ready`, pings it, and restarts it per its `restart` policy with exponential backoff
and jitter. Too many failures inside a window is a crash loop: it stops restarting and says so
(state `crash_loop`). Commands that carry a `request_id` stay in an outbox until the plugin
acknowledges them, so replies owed to a plugin that crashed are re-sent after it restarts.
Plugins die with the server: SIGKILL via PR_SET_PDEATHSIG on Linux (`duragent.child_lifetime`;
even one that ignores SIGTERM), and stdin EOF otherwise. Each plugin is its own process group,
stopped as a group.
A bad line from a plugin (not JSON, nested too deep, too long, an invalid event) is skipped and
logged, a few times a minute at most; a reader that fails anyway restarts the plugin.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import shutil
import signal
import sysconfig
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from duragent.child_lifetime import executable, tied_to_this_process
from duragent.config import ExternalGatewayConfig
from duragent.errors import DuragentError, NotFound
from duragent.gateways.downloads import DOWNLOADS_ENV
from duragent.gateways.framing import iter_lines
from duragent.gateways.protocol import (
    MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    Admission,
    Command,
    CommandError,
    CommandOk,
    Configure,
    Error,
    Event,
    Ping,
    Pong,
    ProtocolError,
    Ready,
    Shutdown,
    ShutdownEvent,
    UnknownEvent,
    encode,
    parse_event,
)
from duragent.gateways.sdk import CONFIGURE_ENV
from duragent.ids import new_id

log = logging.getLogger(__name__)

PluginState = Literal["starting", "ready", "backoff", "stopped", "crash_loop", "stopping"]
#: Called with (gateway name, event) for events the router handles (messages, button presses).
EventHandler = Callable[[str, Event], Awaitable[None]]
#: Whose messages a gateway's agents could answer (the router's `admission`).
AdmissionSource = Callable[[str], Awaitable[Admission]]
CommandResult = CommandOk | CommandError

OUTBOX_LIMIT = 1000


@dataclass(frozen=True)
class GatewayTiming:
    """Timeouts and restart pacing (seconds); the defaults suit a home server."""

    ready_timeout: float = 30.0
    ping_interval: float = 30.0
    pong_timeout: float = 10.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    #: Up to this fraction of the backoff is added at random, so plugins don't restart in step.
    jitter: float = 0.25
    #: A plugin ready for this long is healthy again: backoff and failure count reset.
    healthy_after: float = 60.0
    crash_loop_failures: int = 5
    crash_loop_window: float = 300.0
    #: After `shutdown` + SIGTERM, how long before SIGKILL.
    stop_grace: float = 5.0


def timing_of(spec: ExternalGatewayConfig, timing: GatewayTiming) -> GatewayTiming:
    """`timing` with the timeouts `spec` sets itself (`ready_timeout`, ...) in their place."""
    own = {
        name: value.total_seconds()
        for name in ("ready_timeout", "ping_interval", "pong_timeout", "stop_grace")
        if (value := getattr(spec, name)) is not None
    }
    return replace(timing, **own)


@dataclass
class PluginStatus:
    """What `duragent gateway list`, /readyz and /metrics report about one plugin."""

    name: str
    state: PluginState = "starting"
    restarts: int = 0
    last_error: str | None = None
    pid: int | None = None
    capabilities: list[str] = field(default_factory=list)
    #: What the plugin said people type before a chat command (see `Ready.command_prefix`).
    command_prefix: str = ""
    ready_since: float | None = None
    #: Whether the plugin reached its platform at its last `pong` (None: not asked yet in this
    #: run): a `ready` plugin whose platform dropped it is still `ready`, and reconnecting.
    connected: bool | None = None

    def to_json(self) -> dict[str, object]:
        """The JSON form used by the admin endpoint."""
        return {
            "name": self.name,
            "state": self.state,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "pid": self.pid,
            "capabilities": self.capabilities,
            "connected": self.connected,
        }


class GatewayNotFound(NotFound):
    """No configured gateway has this name."""

    def __init__(self, name: str):
        super().__init__(f"no gateway named {name!r}")
        self.name = name


def plugin_search_path(env: Mapping[str, str]) -> str:
    """PATH, then the folder Duragent's own commands are installed in: the plugins installed with
    it (`duragent-gateway-discord`) are found also when its venv is not on PATH (a systemd unit
    running `~/.venvs/duragent/bin/duragent serve`)."""
    path = env.get("PATH", os.defpath)
    scripts = sysconfig.get_path("scripts")
    return os.pathsep.join([path, scripts]) if scripts else path


def _plugin_argv(command: str, args: Iterable[str], env: dict[str, str]) -> list[str]:
    """The command line that starts the plugin (killed with the server on Linux).

    The plugin is looked up here, so a missing one is an OSError with its name, as without it.
    """
    found = executable(command, plugin_search_path(env))
    program, argv = tied_to_this_process(found, [found, *args])
    return [program, *argv]


class _BadLines:
    """Logs the first few bad lines of each minute one by one, and then how many more there were.

    A plugin that floods its stdout with garbage must not flood the server's log too.
    """

    def __init__(self, gateway: str, *, per_window: int = 5, window: float = 60.0):
        self.gateway = gateway
        self.per_window = per_window
        self.window = window
        self.total = 0
        self._window_start = time.monotonic()
        self._in_window = 0
        self._unlogged = 0

    def skipped(self, reason: str) -> None:
        """Count one skipped line; log it while this minute's quota lasts."""
        now = time.monotonic()
        if now - self._window_start >= self.window:
            self.flush()
            self._window_start, self._in_window = now, 0
        self.total += 1
        self._in_window += 1
        if self._in_window <= self.per_window:
            log.warning("gateway %s: skipping a line: %s", self.gateway, reason)
        else:
            self._unlogged += 1

    def flush(self) -> None:
        """Log how many skipped lines were not logged one by one."""
        if self._unlogged:
            log.warning("gateway %s: skipped %d more bad lines", self.gateway, self._unlogged)
            self._unlogged = 0


class PluginSupervisor:
    """Runs and re-runs one plugin process."""

    def __init__(
        self,
        spec: ExternalGatewayConfig,
        on_event: EventHandler,
        *,
        base_dir: Path,
        timing: GatewayTiming,
        on_restart: Callable[[str], None] = lambda name: None,
        variables: Mapping[str, str] | None = None,
        admission: AdmissionSource | None = None,
    ):
        self.spec = spec
        #: Whose messages the server could answer, sent with `configure` (see `Admission`).
        self.admission = admission
        #: `config:` key -> the environment variable duragent.yaml read its value from.
        self.variables = dict(variables or {})
        self.on_event = on_event
        self.base_dir = base_dir
        self.timing = timing
        self.on_restart = on_restart
        self.status = PluginStatus(spec.name)
        # A bare name is looked up on PATH; a relative path is relative to duragent.yaml's folder.
        command = os.path.expanduser(spec.command)
        if "/" in command and not os.path.isabs(command):
            command = str(base_dir / command)
        self._command_path = command
        self._outbox: collections.OrderedDict[str, Command] = collections.OrderedDict()
        self._waiters: dict[str, asyncio.Future[CommandResult]] = {}
        self._pongs: dict[str, asyncio.Future[Pong]] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._failures: collections.deque[float] = collections.deque()
        #: The last handler task of each chat: events run outside the reader, one chat's in order.
        self._chat_tails: dict[str, asyncio.Task[None]] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        #: Why the current run is failing, when we know better than its exit code.
        self._run_error: str | None = None
        #: The last run ended on a fatal `not_connected` or no `ready` in time: the platform was
        #: out of reach.
        self._unreachable = False
        #: The current run ended on an error the plugin itself called fatal (a refused token).
        self._said_fatal = False
        #: Where the plugin saves the files users send; kept across its restarts and removed by
        #: `stop` only after the events naming them were handled (the plugin may exit first).
        self._downloads: Path | None = None

    @property
    def name(self) -> str:
        """The gateway's configured name."""
        return self.spec.name

    @property
    def outbox(self) -> list[Command]:
        """Commands sent but not acknowledged yet, oldest first."""
        return list(self._outbox.values())

    def start(self) -> None:
        """Start supervising (returns at once)."""
        self._task = asyncio.create_task(self._supervise(), name=f"gateway {self.name}")
        self._task.add_done_callback(self._supervisor_done)

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.status.state = "stopped"
            self.status.last_error = f"supervisor failed: {task.exception()!r}"
            log.error("gateway %s: supervisor failed", self.name, exc_info=task.exception())

    async def send(self, command: Command) -> asyncio.Future[CommandResult] | None:
        """Send a command; for ones with a request_id, a future of the plugin's answer.

        Such commands wait in the outbox until answered: if the plugin is down or crashes
        before answering, they are (re-)sent once it is ready again. Commands without a
        request_id (typing) are dropped while the plugin is not ready.
        """
        request_id: str | None = getattr(command, "request_id", None)
        if request_id is None:
            if self._ready.is_set():
                with contextlib.suppress(ConnectionError):
                    await self._write(command)
            return None
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = future
        self._outbox[request_id] = command
        while len(self._outbox) > OUTBOX_LIMIT:
            dropped, _ = self._outbox.popitem(last=False)
            log.warning("gateway %s: outbox full, dropping %s", self.name, dropped)
            waiter = self._waiters.pop(dropped, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("dropped from a full outbox"))
        if self._ready.is_set():
            with contextlib.suppress(ConnectionError):
                await self._write(command)  # if the plugin just died, the outbox re-sends it
        return future

    async def stop(self) -> None:
        """Ask the plugin to shut down; SIGTERM, then SIGKILL after the grace period; then handle
        what it passed on meanwhile (each step bounded by the grace period)."""
        self._stopping = True
        self.status.state = "stopping"
        proc = self._proc
        running = proc is not None and proc.returncode is None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ConnectionError, OSError):
                await asyncio.wait_for(self._write(Shutdown()), 1.0)
            _signal_group(proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.timing.stop_grace)
            except TimeoutError:
                log.warning(
                    "gateway %s: no exit %.1fs after SIGTERM, killing", self.name, self.timing.stop_grace
                )
                _signal_group(proc, signal.SIGKILL)
                await proc.wait()
        if self._task is not None:
            if running:
                # What the plugin wrote before it exited is still read, and handled below: a
                # message it passed on while stopping was confirmed to its platform, which will
                # not send it again (the router keeps it in pending.json).
                await asyncio.wait({self._task}, timeout=self.timing.stop_grace)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        handlers = list(self._handlers)
        if handlers:
            await asyncio.wait(handlers, timeout=self.timing.stop_grace)
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if self._downloads is not None:
            shutil.rmtree(self._downloads, ignore_errors=True)
            self._downloads = None
        self.status.state = "stopped"
        self.status.pid = None
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.cancel()

    # ---------------------------------------------------------------- supervision

    async def _supervise(self) -> None:
        backoff = self.timing.backoff_initial
        while not self._stopping:
            started = time.monotonic()
            exit_code = await self._run_once()
            if self._stopping:
                return
            ready_for = time.monotonic() - self.status.ready_since if self.status.ready_since else 0.0
            self.status.ready_since = None
            if ready_for >= self.timing.healthy_after:
                backoff = self.timing.backoff_initial
                self._failures.clear()
            failed = exit_code != 0
            if self.spec.restart == "never" or (self.spec.restart == "on_failure" and not failed):
                self.status.state = "stopped"
                if self._said_fatal:
                    log.error(
                        "gateway %s stopped (exit %s; restart: %s): %s",
                        self.name,
                        exit_code,
                        self.spec.restart,
                        self._run_error,
                    )
                else:
                    log.info("gateway %s exited (%s); restart: %s", self.name, exit_code, self.spec.restart)
                return
            if not self._unreachable:
                # A platform out of reach (the network not up yet after a power cut) is waited
                # out, backing off: giving up would leave a bot deaf until the server restarts.
                self._failures.append(started)
            while self._failures and self._failures[0] < time.monotonic() - self.timing.crash_loop_window:
                self._failures.popleft()
            if len(self._failures) >= self.timing.crash_loop_failures:
                self.status.state = "crash_loop"
                log.error(
                    "gateway %s: %d failures within %.0fs, not restarting (last error: %s)",
                    self.name,
                    len(self._failures),
                    self.timing.crash_loop_window,
                    self.status.last_error,
                )
                return
            self.status.state = "backoff"
            delay = backoff * (1 + random.uniform(0, self.timing.jitter))
            # (an error the plugin called fatal, e.g. a refused token, is the operator's to fix; a
            # platform out of reach is waited out)
            level = logging.ERROR if self._said_fatal and not self._unreachable else logging.WARNING
            log.log(level, "gateway %s: restarting in %.1fs (%s)", self.name, delay, self.status.last_error)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, self.timing.backoff_max)
            self.status.restarts += 1
            self.on_restart(self.name)

    async def _run_once(self) -> int | None:
        """Run the plugin until it exits; its exit code (None: it could not be started)."""
        self.status.state = "starting"
        self.status.connected = None
        self._run_error = None
        self._unreachable = False
        self._said_fatal = False
        self._ready.clear()
        try:
            proc = await self._spawn()
        except OSError as exc:
            self.status.last_error = f"cannot start {self.spec.command!r}: {exc}"
            log.error("gateway %s: %s", self.name, self.status.last_error)
            return None
        self._proc = proc
        self.status.pid = proc.pid
        reader = asyncio.create_task(self._read_events(proc), name=f"gateway {self.name} reader")
        watchdog = asyncio.create_task(self._watch(proc), name=f"gateway {self.name} watchdog")
        try:
            try:
                await self._write(Configure(config=dict(self.spec.config), admission=await self._admission()))
            except (ConnectionError, OSError) as exc:
                log.warning("gateway %s: could not send configure: %s", self.name, exc)
            exit_code = await proc.wait()
            # what it wrote before exiting (a child still holding its stdout must not hold us)
            await asyncio.wait({reader}, timeout=self.timing.stop_grace)
        finally:
            # also when supervision is cancelled: neither task may outlive this run
            for task in (watchdog, reader):
                task.cancel()
            await asyncio.gather(watchdog, reader, return_exceptions=True)
        self._ready.clear()
        self.status.pid = None
        if not self._stopping and (self._run_error or exit_code != 0):
            self.status.last_error = self._run_error or f"exited with code {exit_code}"
        log.info("gateway %s (pid %s) exited with %s", self.name, proc.pid, exit_code)
        return exit_code

    async def _admission(self) -> Admission | None:
        """Whose messages the plugin may fetch files for; None (fetch for all) if unknown."""
        if self.admission is None:
            return None
        try:
            return await self.admission(self.name)
        except (DuragentError, OSError) as exc:
            log.warning("gateway %s: cannot tell whose messages may be answered: %s", self.name, exc)
            return None

    async def _spawn(self) -> asyncio.subprocess.Process:
        if self._downloads is None:
            self._downloads = Path(tempfile.mkdtemp(prefix="duragent-gateway-downloads-"))
        env = {**os.environ, **self.spec.env, CONFIGURE_ENV: "1", DOWNLOADS_ENV: str(self._downloads)}
        return await asyncio.create_subprocess_exec(
            *_plugin_argv(self._command_path, self.spec.args, env),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # inherited: plugin logs land in the server's log
            env=env,
            # Own process group: a terminal's Ctrl-C reaches the server, which stops plugins in order,
            # and stopping a plugin stops whatever it started.
            start_new_session=True,
        )

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        """Kill the plugin if it is not ready in time or stops answering pings."""
        try:
            await asyncio.wait_for(self._ready.wait(), self.timing.ready_timeout)
        except TimeoutError:
            # Still connecting: most likely a platform that silently drops packets or never
            # answers, which passes like one out of reach (a broken start says so and exits).
            self._unreachable = True
            self._fail(proc, f"no ready within {self.timing.ready_timeout:g}s")
            return
        while proc.returncode is None:
            await asyncio.sleep(self.timing.ping_interval)
            request_id = new_id("ping")
            pong: asyncio.Future[Pong] = asyncio.get_running_loop().create_future()
            self._pongs[request_id] = pong
            try:
                # The write counts too: a plugin that stopped reading leaves the pipe full, and a
                # ping waiting its turn behind a long reply would wait for ever.
                async with asyncio.timeout(self.timing.pong_timeout):
                    await self._write(Ping(request_id=request_id))
                    await pong
            except TimeoutError:
                self._fail(proc, f"no pong within {self.timing.pong_timeout:g}s")
                return
            except (ConnectionError, OSError):
                return  # the plugin is exiting; _run_once sees it
            finally:
                self._pongs.pop(request_id, None)

    def _fail(self, proc: asyncio.subprocess.Process, reason: str) -> None:
        self._run_error = reason
        log.error("gateway %s: %s; killing pid %s", self.name, reason, proc.pid)
        _signal_group(proc, signal.SIGKILL)

    async def _read_events(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        bad = _BadLines(self.name)

        def oversize(size: int) -> None:
            bad.skipped(f"{size} bytes is over the {MAX_LINE_BYTES}-byte limit")

        try:
            async for line in iter_lines(proc.stdout, on_oversize=oversize):
                try:
                    event = parse_event(line)
                except ProtocolError as exc:
                    bad.skipped(str(exc))
                    continue
                try:
                    await self._handle(event)
                except Exception as exc:  # one event we cannot handle must not end the stream
                    log.debug("gateway %s: handling %s failed", self.name, event.type, exc_info=True)
                    bad.skipped(f"handling its {event.type!r} event failed: {exc!r}")
        except Exception as exc:
            # Without its reader the plugin is deaf to us: restart it rather than wait forever.
            log.exception("gateway %s: reading its events failed", self.name)
            self._fail(proc, f"reading its events failed: {exc!r}")
        finally:
            bad.flush()

    async def _handle(self, event: Event | UnknownEvent) -> None:
        if isinstance(event, Ready):
            await self._on_ready(event)
        elif isinstance(event, CommandOk | CommandError):
            self._outbox.pop(event.request_id, None)
            waiter = self._waiters.pop(event.request_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
            if isinstance(event, CommandError):
                log.warning("gateway %s: command %s failed: %s", self.name, event.request_id, event.message)
        elif isinstance(event, Pong):
            if not event.connected and self.status.connected is not False:
                log.warning("gateway %s: the plugin lost its platform and is reconnecting", self.name)
            elif event.connected and self.status.connected is False:
                log.info("gateway %s: the plugin reached its platform again", self.name)
            self.status.connected = event.connected
            pong = self._pongs.get(event.request_id)
            if pong is not None and not pong.done():
                pong.set_result(event)
        elif isinstance(event, Error):
            if event.fatal:
                # said once, where the run's end is logged (with the restart it leads to)
                self._run_error = f"fatal {event.code}: {self._name_variables(event.message)}"
                self._unreachable = event.code == "not_connected"
                self._said_fatal = True
            else:
                log.warning("gateway %s: %s (%s)", self.name, self._name_variables(event.message), event.code)
        elif isinstance(event, ShutdownEvent):
            log.info("gateway %s is shutting down: %s", self.name, event.reason)
        elif isinstance(event, UnknownEvent):
            log.debug("gateway %s: ignoring unknown event %r", self.name, event.type)
        else:
            self._dispatch(event)

    def _name_variables(self, message: str) -> str:
        """`message` with "`bot_token`" as "`bot_token` (from TELEGRAM_BOT_TOKEN)" where the
        value came from a variable: that variable is what the user set, and has to fix."""
        for key, variable in self.variables.items():
            message = message.replace(f"`{key}`", f"`{key}` (from {variable})")
        return message

    def _dispatch(self, event: Event) -> None:
        """Hand `event` to the router in a task, after the chat's earlier events.

        Handling can be slow (media uploads, starting sessions); done inline it would hold up
        the reader, and with it the pongs that keep a healthy plugin from being killed.
        """
        chat = str(getattr(event, "chat_id", ""))
        previous = self._chat_tails.get(chat)
        task = asyncio.create_task(self._handle_in_order(previous, event), name=f"gateway {self.name} {chat}")
        self._chat_tails[chat] = task
        self._handlers.add(task)

        def forget(done: asyncio.Task[None]) -> None:
            self._handlers.discard(done)
            if self._chat_tails.get(chat) is done:
                del self._chat_tails[chat]

        task.add_done_callback(forget)

    async def _handle_in_order(self, previous: asyncio.Task[None] | None, event: Event) -> None:
        if previous is not None:
            await asyncio.wait({previous})  # its outcome is its own; only its order matters here
        try:
            await self.on_event(self.name, event)
        except Exception:
            # One bad message must not stop the plugin's event stream.
            log.exception("gateway %s: handling %s failed", self.name, event.type)

    async def _on_ready(self, event: Ready) -> None:
        if event.version.split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
            log.warning(
                "gateway %s speaks protocol %s, we speak %s", self.name, event.version, PROTOCOL_VERSION
            )
        self.status.state = "ready"
        self.status.capabilities = list(event.capabilities)
        self.status.command_prefix = event.command_prefix
        self.status.ready_since = time.monotonic()
        self._ready.set()
        owed = list(self._outbox.values())
        if owed:
            log.info("gateway %s: re-sending %d unacknowledged commands", self.name, len(owed))
        for command in owed:
            await self._write(command)

    async def _write(self, command: Command) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise ConnectionError(f"gateway {self.name} is not running")
        async with self._write_lock:
            try:
                proc.stdin.write(encode(command))
                await proc.stdin.drain()
            except (ConnectionError, OSError) as exc:
                # Left in the outbox; re-sent after the restart this exit will cause.
                log.info("gateway %s: write failed (%s)", self.name, exc)


def _signal_group(proc: asyncio.subprocess.Process, signum: int) -> None:
    """Signal the plugin's process group (the plugin and what it started), unless it was reaped."""
    if proc.returncode is not None:
        return  # reaped: its pid (and so the group id) may belong to someone else by now
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


class GatewayManager:
    """All configured gateway plugins of one server."""

    def __init__(
        self,
        gateways: Iterable[ExternalGatewayConfig],
        on_event: EventHandler,
        *,
        base_dir: Path,
        timing: GatewayTiming | None = None,
        on_restart: Callable[[str], None] = lambda name: None,
        variables: Mapping[str, Mapping[str, str]] | None = None,
        admission: AdmissionSource | None = None,
    ):
        """`variables`: per gateway, which `config:` keys were read from which variable;
        `admission`: whose messages each gateway's agents could answer, told to its plugin."""
        timing = timing or GatewayTiming()
        variables = variables or {}
        self.plugins = {
            spec.name: PluginSupervisor(
                spec,
                on_event,
                base_dir=base_dir,
                timing=timing_of(spec, timing),
                on_restart=on_restart,
                variables=variables.get(spec.name),
                admission=admission,
            )
            for spec in gateways
        }

    def start(self) -> None:
        """Start every plugin (returns at once; each becomes ready on its own)."""
        for plugin in self.plugins.values():
            plugin.start()

    async def stop(self) -> None:
        """Stop every plugin in parallel (SIGKILL after the grace period)."""
        await asyncio.gather(*(plugin.stop() for plugin in self.plugins.values()))

    def plugin(self, name: str) -> PluginSupervisor:
        """The supervisor of gateway `name` (GatewayNotFound otherwise)."""
        try:
            return self.plugins[name]
        except KeyError:
            raise GatewayNotFound(name) from None

    async def send(self, gateway: str, command: Command) -> asyncio.Future[CommandResult] | None:
        """Send a command to one gateway (see PluginSupervisor.send)."""
        return await self.plugin(gateway).send(command)

    def statuses(self) -> list[PluginStatus]:
        """Every plugin's status, in configuration order."""
        return [plugin.status for plugin in self.plugins.values()]

    @property
    def healthy(self) -> bool:
        """False while any plugin is in a crash loop."""
        return all(status.state != "crash_loop" for status in self.statuses())
