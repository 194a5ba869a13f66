"""Running `duragent serve`: open the workspace, listen, say ready, stop on a signal.

No typer here: both the `serve` command and its fast path (`duragent.cli.quick_serve`, what an
auto-started server runs) call `serve_workspace`. The run file is written once the server is
ready (`duragent.client.runfile`), and a client that started it is told on the pipe it gave.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from duragent.cli.context import CliState
    from duragent.config import DuragentConfig
    from duragent.server.state import ServerState

#: Seconds running turns get to reach a safe point on stop, unless `--grace` says otherwise.
DEFAULT_GRACE = 10.0


@dataclass(frozen=True)
class ServeOptions:
    """`serve`'s own options."""

    host: str | None = None
    port: int | None = None
    agents_dir: Path | None = None
    insecure: bool = False
    grace: float = DEFAULT_GRACE
    #: Started by a terminal client: without a port (option or server.port) it takes a free one.
    auto: bool = False
    ready_fd: int | None = None


def _refuse_a_second_server(config: DuragentConfig) -> None:
    """`duragent serve` by hand while the workspace's server runs (one `send` started in the
    background, say): name it and what to do, rather than whose lock the data directory is."""
    from duragent.client.runfile import read_run_info
    from duragent.errors import UsageError

    if config.services.session.backend == "postgres":
        return  # stateless workers, which may share a data directory (docs/scaling-out.md)
    running = read_run_info(config.data_path)
    if running is None:
        return
    how = "started by a terminal client" if running.auto_started else "started by hand"
    raise UsageError(
        f"the workspace's server is already running (pid {running.pid}, {running.url}, {how}): "
        "clients use it as it is; `duragent serve stop` stops it, to run it here instead"
    )


def serve_workspace(state: CliState, options: ServeOptions) -> None:
    """Serve the workspace of `state` until SIGTERM / SIGINT / an admin shutdown."""
    import asyncio
    import gc

    from duragent.server.allocator import return_freed_memory

    # Before the server allocates anything and starts a thread (each would get an arena).
    return_freed_memory()
    # Everything start-up allocates lives as long as the server: collecting it is wasted work.
    gc.disable()

    from duragent.config import DEFAULT_PORT

    config = state.config()
    if not options.auto:
        _refuse_a_second_server(config)
    config.require_gateway_variables()
    if options.agents_dir is not None:
        path = options.agents_dir.expanduser().absolute()
        static = config.agents.static.model_copy(update={"path": path})
        config = config.model_copy(update={"agents": config.agents.model_copy(update={"static": static})})
    port = options.port
    if port is not None:
        setting = "pass another --port (0 picks a free one)"
    elif config.http_port is not None:
        port = config.http_port
        setting = f"set another server.port in {config.source or 'duragent.yaml'}"
    elif options.auto:
        from duragent.client.runfile import last_auto_port

        # the last auto-started server's port when it is free (a dashboard tab left open comes
        # back), else any free one: two workspaces never clash
        port = last_auto_port(config.data_path) or 0
        setting = ""  # (never shown: a port taken meanwhile falls back to any free one)
    else:
        port = DEFAULT_PORT
        setting = "pass --port 0 (any free port) or set server.port in duragent.yaml"
    asyncio.run(
        run_server(
            config,
            options.host or config.server.host,
            port,
            insecure=options.insecure,
            grace=options.grace,
            auto_started=options.auto,
            ready_fd=options.ready_fd,
            port_setting=setting,
            any_port_if_taken=options.auto and options.port is None and config.http_port is None,
        )
    )


async def run_server(
    config: DuragentConfig,
    host: str,
    port: int,
    *,
    insecure: bool,
    grace: float,
    auto_started: bool = False,
    ready_fd: int | None = None,
    port_setting: str = "set another server.port in duragent.yaml",
    any_port_if_taken: bool = False,
) -> None:
    """Serve until a signal or an admin shutdown; then stop gracefully and remove the run file.

    The run file is written once the port is bound and every resource is open: its appearance
    (and a line on `ready_fd`, for the client that started this server) means ready.
    """
    import asyncio
    import signal

    from duragent.lazy_certificates import import_aiohttp

    import_aiohttp()
    from aiohttp import web

    from duragent.client.runfile import remember_auto_port, remove_run_info
    from duragent.server.app import create_app
    from duragent.server.ports import PortTaken, is_address_in_use, port_holder
    from duragent.server.state import STATE

    app = create_app(config, insecure=insecure, host=host, shutdown_grace=grace)
    # The modules and configuration are kept for good; what opening the workspace allocates (a
    # recovery loads sessions) is collected as usual.
    _freeze_startup_heap()
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=grace + 5, access_log=None)
    await runner.setup()
    _freeze_startup_heap()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            if not is_address_in_use(exc):
                from duragent.errors import UsageError

                # (a host name that does not resolve, an address not on this machine)
                raise UsageError(
                    f"cannot listen on {host} port {port}: {exc.strerror or exc}; check --host or "
                    "server.host in duragent.yaml"
                ) from None
            if not any_port_if_taken:
                raise PortTaken(host, port, port_holder(port), port_setting) from None
            await site.stop()  # (unregistered from the runner: it never listened)
            site = web.TCPSite(runner, host, 0)  # (the port it preferred is taken: any free one)
            await site.start()
        bound_port = _bound_port(runner, port)
        if any_port_if_taken:  # (a server a terminal client started, on a port of its choosing)
            remember_auto_port(config.data_path, bound_port)
        url = f"http://{_url_host(host)}:{bound_port}"
        try:
            _write_run_file(config, app[STATE], host, bound_port, url, auto_started=auto_started)
        except OSError as exc:
            from duragent.errors import DuragentError

            if isinstance(exc, DuragentError):
                raise  # (StorageUnavailable: it names the file and what to do)
            raise DuragentError(f"cannot write the run file in {config.data_path / 'run'}: {exc}") from exc
        print(f"duragent serve: listening on {url} (data: {config.data_path})", file=sys.stderr, flush=True)
        print(
            f"duragent serve: dashboard at {url}/ui/ (`duragent ui` opens it logged in)",
            file=sys.stderr,
            flush=True,
        )
        _signal_ready(ready_fd, url)
        stopping = app[STATE].shutdown
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
        print("duragent serve: stopping", file=sys.stderr, flush=True)
    except BaseException:
        # What stopped the start (a full disk, a port) is the error to show: what fails while
        # closing after it (pending commits on that same full disk) is only reported beside it.
        await _close_after_failure(runner)
        remove_run_info(config.data_path, os.getpid())
        raise
    await runner.cleanup()
    remove_run_info(config.data_path, os.getpid())


async def _close_after_failure(runner: Any) -> None:
    """Close the server after an error stopped it; what fails here is printed, not raised."""
    try:
        await runner.cleanup()
    except Exception as exc:  # any failure to close must not hide the error that stopped the server
        print(f"duragent serve: while closing, also: {exc}", file=sys.stderr, flush=True)


def _signal_ready(ready_fd: int | None, url: str) -> None:
    """Tell the client that started this server that it is ready (a line on the pipe it gave)."""
    if ready_fd is None:
        return
    try:
        os.write(ready_fd, f"{url}\n".encode())
        os.close(ready_fd)
    except OSError:
        pass  # the client gave up waiting; it finds the server through the run file next time


def _freeze_startup_heap() -> None:
    """Exempt everything built at start-up (modules, config, agents) from garbage collection.

    A full collection scans every tracked object; with the start-up heap frozen it scans only what
    the server made since, so its pauses (which stall every stream at once) stay a few ms. Imports
    run without collections (`serve` disables them until the app is built): they leave ~2,000
    unreachable objects, not worth the ~50 ms a full collection of their heap costs here.
    """
    import gc

    gc.freeze()
    gc.enable()


def _bound_port(runner: Any, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _write_run_file(
    config: DuragentConfig, state: ServerState, host: str, port: int, url: str, *, auto_started: bool
) -> None:
    from datetime import UTC, datetime

    from duragent.client.runfile import EnvFingerprint, config_digest, write_run_info
    from duragent.runtime.providers import provider_env_names

    # not the gateways' tokens: a shell without them may use this server (a service keeps them)
    names = provider_env_names(
        (agent.spec.model for agent in state.agents.loaded()), config.referenced_env_outside_gateways
    )
    write_run_info(
        config.data_path,
        {
            "pid": os.getpid(),
            "host": host,
            "port": port,
            "url": url,
            "started_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "workspace_hash": config.workspace_hash,
            "auto_started": auto_started,
            "env": EnvFingerprint.of(names, os.environ).as_json(),
            "config_digest": config_digest(config.source),
        },
    )
