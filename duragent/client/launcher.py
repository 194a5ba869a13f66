"""Find the workspace's server, or start one in the background, so terminal clients have one to talk to.

Order: `--server URL` as given; else the server named in `<data_dir>/run/serve.json` (written by
a server of this data directory once it is ready, so no request is needed to trust it); else a
new `duragent serve` started detached (its own session, stdin from /dev/null, output appended to
`<data_dir>/logs/serve.log`), on a free port unless `server.port` is set (the server decides:
`serve --auto`; the last such server's port when it is free), so two workspaces never clash.
The new server says it is ready on a pipe this client gave it: no polling.

When the environment the running server resolved providers with (API keys, base URLs) differs
from this shell's, a server a terminal client started is restarted if it is idle; otherwise the
client says what to run. Only the standard library is imported here (no aiohttp).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from duragent.client.runfile import RunInfo, config_digest, pid_alive, read_run_info, run_file
from duragent.errors import DuragentError

if TYPE_CHECKING:
    from duragent.config import DuragentConfig

#: How long a freshly started server gets to say it is ready.
START_TIMEOUT = 60.0
#: How long a server asked to stop (to be restarted) gets to exit.
STOP_TIMEOUT = 60.0
#: Marks where one start's output begins in serve.log.
LOG_MARK = "--- "


class ServerStartFailed(DuragentError):
    """A server was started for the workspace but never became ready."""


class ServerExited(ServerStartFailed):
    """The server started for the workspace exited before it was ready (its log says why)."""


class WrongWorkspace(DuragentError):
    """The server at the URL serves another data directory."""


class NoServer(DuragentError):
    """No server runs for the workspace and none may be started."""


@dataclass(frozen=True)
class Connection:
    """The server a client talks to, and whether this client just started (or restarted) it."""

    url: str
    started: bool = False
    pid: int | None = None
    log_path: Path | None = None
    problems: tuple[str, ...] = ()
    #: Why an older server was replaced (empty when it was not).
    restarted_because: str = ""
    #: What the person should run to bring the server up to date (empty when nothing).
    advice: str = ""

    def notices(self, *, quiet: bool = False) -> list[str]:
        """What to tell the person: that a server was started or restarted (unless `quiet`), what to run."""
        lines = []
        if self.restarted_because and not quiet:
            lines.append(
                f"restarted the workspace's server: {self.restarted_because} (pid {self.pid}, {self.url})"
            )
        elif self.started and not quiet:
            lines.append(f"started the workspace's server (pid {self.pid}, {self.url}; log: {self.log_path})")
        if self.advice:
            lines.append(f"warning: {self.advice}")
        lines += [f"warning: server not ready: {problem}" for problem in self.problems]
        return lines


@dataclass(frozen=True)
class Workspace:
    """What the launcher needs to know about a workspace (read from config, or by the fast path)."""

    data_path: Path
    config_path: Path | None
    workspace_hash: str


def workspace_of(config: DuragentConfig) -> Workspace:
    """The launcher's view of a loaded configuration."""
    return Workspace(
        config.data_path,
        config.source.resolve() if config.source is not None else None,
        config.workspace_hash,
    )


def log_file(data_path: Path) -> Path:
    """`<data_dir>/logs/serve.log`, where an auto-started server writes (git-ignored)."""
    return data_path / "logs" / "serve.log"


def server_address(url: str) -> str:
    """`--server URL` as a base URL requests can start from; UsageError when it is not one."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        valid = False
    else:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    if not valid:
        from duragent.errors import UsageError

        raise UsageError(
            f"--server {url!r} is not an http:// or https:// URL with a host: give one like "
            "http://127.0.0.1:8080"
        )
    return url.rstrip("/")


def connect(
    workspace: Workspace,
    *,
    server_url: str | None = None,
    start: bool = True,
    env: Mapping[str, str] | None = None,
    while_starting: Callable[[], object] = lambda: None,
) -> Connection:
    """The server for this workspace: `server_url`, the running one, or (with `start`) a new one.

    `while_starting` runs while a new server starts (once it is spawned, before it is ready): a
    client's own preparation then overlaps the server's.
    """
    if server_url:
        return Connection(server_address(server_url))
    env = os.environ if env is None else env
    info = read_run_info(workspace.data_path)
    if info is not None and info.workspace_hash and info.workspace_hash != workspace.workspace_hash:
        raise WrongWorkspace(
            f"{run_file(workspace.data_path)} names a server of another workspace (pid {info.pid}); "
            "stop it with `duragent serve stop` there"
        )
    if info is not None and not stale_because(info, workspace, env):
        return Connection(info.url, pid=info.pid)
    if not start:
        if info is not None:
            return Connection(info.url, pid=info.pid, advice=_restart_advice(info, workspace, env))
        raise NoServer(f"no server is running for {workspace.data_path}; start one with `duragent serve`")
    with _start_lock(workspace.data_path):
        # Another client may have started (or restarted) the server while this one waited.
        current = read_run_info(workspace.data_path)
        if current is not None and not stale_because(current, workspace, env):
            return Connection(current.url, pid=current.pid)
        reason = ""
        if current is not None:
            if not current.auto_started or _busy(current):
                return Connection(
                    current.url, pid=current.pid, advice=_restart_advice(current, workspace, env)
                )
            reason = stale_because(current, workspace, env)
            stop_server(current)
        connection = start_server(workspace, while_starting=while_starting)
        return Connection(
            connection.url,
            started=True,
            pid=connection.pid,
            log_path=connection.log_path,
            restarted_because=reason,
        )


def stale_because(info: RunInfo, workspace: Workspace, env: Mapping[str, str]) -> str:
    """Why the running server no longer matches this shell and workspace ("" when it does).

    Agents and policies are reloaded by the server itself; duragent.yaml and the environment the
    server resolved providers with (API keys, base URLs) are fixed when it starts.
    """
    if info.config_digest and info.config_digest != config_digest(workspace.config_path):
        return "duragent.yaml changed since it started"
    if info.env is None:
        return ""
    changed = info.env.changed_in(env)
    if not changed:
        return ""
    why = f"this shell's provider environment ({', '.join(changed)}) differs from the one it started with"
    lost = info.env.unset_in(env)
    if lost:
        # (a restart takes this shell's environment whole: say what the server loses with it)
        why += f"; the new server lacks {', '.join(lost)}, which this shell does not set"
    return why


def _restart_advice(info: RunInfo, workspace: Workspace, env: Mapping[str, str]) -> str:
    why = stale_because(info, workspace, env)
    if info.auto_started:
        return (
            f"the running server (pid {info.pid}) is out of date ({why}) but busy, so it was left "
            "running; when its work is done run `duragent serve stop`, and the next command starts "
            "an up-to-date one"
        )
    return (
        f"the running server (pid {info.pid}) is out of date ({why}) and was started by hand: "
        "stop it with `duragent serve stop` and start `duragent serve` again from this shell"
    )


def _busy(info: RunInfo) -> bool:
    """Whether the server runs a turn, waits for an approval, or has a client attached."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{info.url}/readyz", timeout=5) as response:
            body: Any = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        return False
    return bool(body.get("busy") or body.get("attached"))


def stop_server(info: RunInfo, timeout: float = STOP_TIMEOUT) -> None:
    """Ask a server to stop (SIGTERM: a graceful stop) and wait until its process is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(info.pid):
        if time.monotonic() > deadline:
            raise ServerStartFailed(f"the old server (pid {info.pid}) did not stop within {timeout:g}s")
        time.sleep(0.02)


def start_server(workspace: Workspace, *, while_starting: Callable[[], object] = lambda: None) -> Connection:
    """Start `duragent serve` for the workspace, detached, and wait until it says it is ready."""
    log_path = log_file(workspace.data_path)
    read_end, write_end = os.pipe()
    try:
        process = spawn_server(workspace, log_path, ready_fd=write_end)
    finally:
        os.close(write_end)
    try:
        while_starting()
        url = _wait_ready(read_end, process)
    finally:
        os.close(read_end)
    if url is None:
        code = process.poll()
        if code is None:
            raise ServerStartFailed(
                f"the server started (pid {process.pid}) but was not ready within {START_TIMEOUT:g}s; "
                f"see its log at {log_path}"
            )
        said = last_start_output(log_path)
        raise ServerExited(f"the server could not start (exit status {code}; log: {log_path}):\n{said}")
    return Connection(url, started=True, pid=process.pid, log_path=log_path)


def _wait_ready(read_end: int, process: subprocess.Popen[bytes]) -> str | None:
    """The URL the server writes on the pipe once ready; None when it exits or the time is up."""
    deadline = time.monotonic() + START_TIMEOUT
    received = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([read_end], [], [], left)
        if not ready:
            return None
        chunk = os.read(read_end, 4096)
        if not chunk:
            # The pipe closed without a URL: the server exited (its exit status says why).
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
            return None
        received += chunk
        if b"\n" in received:
            return received.split(b"\n", 1)[0].decode()


def spawn_server(workspace: Workspace, log_path: Path, *, ready_fd: int) -> subprocess.Popen[bytes]:
    """Start `duragent serve` detached: own session, stdin from /dev/null, output appended to the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "duragent", *serve_arguments(workspace), "serve", "--auto"]
    command += ["--ready-fd", str(ready_fd)]
    with log_path.open("ab") as log:
        log.write(f"{LOG_MARK}{time.strftime('%Y-%m-%d %H:%M:%S')} started by a terminal client\n".encode())
        log.flush()
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(workspace.config_path.parent if workspace.config_path else workspace.data_path.parent),
            start_new_session=True,
            close_fds=True,
            pass_fds=(ready_fd,),
        )


def serve_arguments(workspace: Workspace) -> list[str]:
    """Global options that make a child `duragent` open exactly this workspace."""
    arguments: list[str] = []
    if workspace.config_path is not None:
        arguments += ["--config", str(workspace.config_path)]
    return [*arguments, "--data-dir", str(workspace.data_path)]


@contextlib.contextmanager
def _start_lock(data_path: Path) -> Iterator[None]:
    """One client at a time starts (or restarts) the workspace's server; the others wait, then reuse it."""
    import fcntl

    folder = data_path / "run"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "start.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def last_start_output(path: Path, lines: int = 15) -> str:
    """What the last start wrote to serve.log (its last lines), indented."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    text = "\n" + text  # the first start's mark opens the file
    start = text.rfind("\n" + LOG_MARK)
    tail = text[start + 1 :].splitlines()[1:] if start >= 0 else text.splitlines()[1:]
    return "\n".join("  " + line for line in tail[-lines:])
