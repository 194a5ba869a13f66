"""Find the workspace's server, or start one in the background, so terminal clients have one to talk to.

Order: `--server URL` as given; else the URL in `<data_dir>/run/serve.json` when its pid is
alive and its /readyz reports this workspace; else a new `duragent serve` started detached
(its own session, stdin from /dev/null, output appended to `<data_dir>/logs/serve.log`), so
the sessions it runs outlive the terminal that started it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from duragent.client.http import ApiClient, ServerUnreachable
from duragent.errors import DuragentError

if TYPE_CHECKING:
    from duragent.config import DuragentConfig

#: How long a freshly started server gets to answer /readyz.
START_TIMEOUT = 10.0
#: First and longest pause between /readyz polls while a server starts.
FIRST_POLL, LONGEST_POLL = 0.1, 1.0


class ServerStartFailed(DuragentError):
    """A server was started for the workspace but never became ready."""


class WrongWorkspace(DuragentError):
    """The server at the URL serves another data directory."""


@dataclass(frozen=True)
class RunInfo:
    """What a running `duragent serve` wrote to `<data_dir>/run/serve.json`."""

    pid: int
    url: str
    host: str = ""
    port: int = 0
    started_at: str = ""


@dataclass(frozen=True)
class Connection:
    """The server a client talks to, and whether this client just started it."""

    url: str
    started: bool = False
    pid: int | None = None
    log_path: Path | None = None
    problems: tuple[str, ...] = ()


def run_file(config: DuragentConfig) -> Path:
    """`<data_dir>/run/serve.json`."""
    return config.data_path / "run" / "serve.json"


def log_file(config: DuragentConfig) -> Path:
    """`<data_dir>/logs/serve.log`, where an auto-started server writes (git-ignored)."""
    return config.data_path / "logs" / "serve.log"


def read_run_info(config: DuragentConfig) -> RunInfo | None:
    """The run file's contents, or None when there is none (or it is unreadable)."""
    try:
        data: Any = json.loads(run_file(config).read_text(encoding="utf-8"))
        return RunInfo(
            pid=int(data["pid"]),
            url=str(data["url"]),
            host=str(data.get("host", "")),
            port=int(data.get("port", 0)),
            started_at=str(data.get("started_at", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True
    return True


async def connect(
    config: DuragentConfig, *, token: str | None, server_url: str | None = None, start: bool = True
) -> Connection:
    """The server for this workspace: `server_url`, a running one, or (with `start`) a new one."""
    if server_url:
        return Connection(server_url.rstrip("/"))
    running = await find_running(config, token=token)
    if running is not None:
        return running
    if not start:
        raise ServerUnreachable(
            f"http://{config.server.host}:{config.http_port}", "no server is running for this workspace"
        )
    return await start_server(config, token=token)


async def find_running(config: DuragentConfig, *, token: str | None) -> Connection | None:
    """The workspace's running server, when the run file names a live process that answers for it."""
    info = read_run_info(config)
    if info is None or not pid_alive(info.pid):
        return None
    # A server another client just started may not answer yet: give it the start-up time.
    deadline = time.monotonic() + START_TIMEOUT
    pause = FIRST_POLL
    while True:
        problems = await _ready_for(config, info.url, token)
        if problems is not None:
            return Connection(info.url, pid=info.pid, problems=problems)
        if time.monotonic() >= deadline or not pid_alive(info.pid):
            return None
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_POLL)


async def start_server(config: DuragentConfig, *, token: str | None) -> Connection:
    """Start `duragent serve` for the workspace, detached, and wait until /readyz answers."""
    log_path = log_file(config)
    process = spawn_server(config, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    pause = FIRST_POLL
    while time.monotonic() < deadline:
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_POLL)
        code = process.poll()
        if code is not None:
            # Another client may have started the workspace's server at the same moment.
            running = await find_running(config, token=token)
            if running is not None:
                return running
            raise ServerStartFailed(
                f"the server exited at start (code {code}); see {log_path}:\n{_tail(log_path)}"
            )
        info = read_run_info(config)
        if info is None or info.pid != process.pid:
            continue
        problems = await _ready_for(config, info.url, token)
        if problems is not None:
            return Connection(info.url, started=True, pid=process.pid, log_path=log_path, problems=problems)
    raise ServerStartFailed(
        f"the server started (pid {process.pid}) but did not answer /readyz within {START_TIMEOUT:g}s; "
        f"see its log at {log_path}"
    )


def spawn_server(config: DuragentConfig, log_path: Path) -> subprocess.Popen[bytes]:
    """Start `duragent serve` detached: own session, stdin from /dev/null, output appended to the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "duragent", *serve_arguments(config), "serve"]
    with log_path.open("ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} started by a terminal client\n".encode())
        log.flush()
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(config.base_dir),
            start_new_session=True,
            close_fds=True,
        )


def serve_arguments(config: DuragentConfig) -> list[str]:
    """Global options that make a child `duragent` open exactly this workspace."""
    arguments: list[str] = []
    if config.source is not None:
        arguments += ["--config", str(config.source.resolve())]
    return [*arguments, "--data-dir", str(config.data_path)]


async def _ready_for(config: DuragentConfig, url: str, token: str | None) -> tuple[str, ...] | None:
    """Readiness problems (empty: ready) of the server at `url` for this workspace; None if silent."""
    async with ApiClient(url, token=token) as api:
        try:
            status, body = await api.readyz()
        except ServerUnreachable:
            return None
    if body.get("workspace_hash") != config.workspace_hash:
        raise WrongWorkspace(
            f"the server at {url} serves another workspace; stop it (`duragent serve stop` there) "
            "or give this workspace another server.port"
        )
    return tuple(str(p) for p in body.get("problems", [])) if status != 200 else ()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
