"""What the server tests share: a workspace on disk, the app in-process or as a real
`duragent serve` process, and an SSE reader. Loaded as a pytest plugin for its fixtures."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from duragent.access_tokens import auth_headers
from duragent.config import load_config
from duragent.server.app import create_app
from duragent.testing.fake_llm import FakeLLMServer

if TYPE_CHECKING:
    from duragent.sessions.manager import SessionManager, SessionOwner
    from duragent.stores.base import SessionStore

AGENT_YAML = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: {name}
  description: A test agent
  version: "1.2"
spec:
  model:
    provider: openai
    name: gpt-test
    base_url: {url}
    api_key_env: FAKE_LLM_KEY
  system_prompt: You are a test agent.
  session:
    on_disconnect: {on_disconnect}
    max_background_runtime: {max_background}
  tools:
    builtin: [bash]
    policy:
      mode: ask
      allow: ["bash:echo *"]
"""

CHILD_ENV = {"FAKE_LLM_KEY": "sk-test"}


@contextlib.asynccontextmanager
async def session_manager(
    root: Path,
    llm_url: str,
    store: SessionStore,
    *,
    max_background: str,
    ownership: SessionOwner | None = None,
) -> AsyncIterator[SessionManager]:
    """A session manager over `store`, in this process, with this harness's agent `helper`
    (policy `ask`, only `echo` allowed) on the fake model at `llm_url`; closed afterwards.

    With `ownership` (a cluster node's), it is one worker of a cluster."""
    from duragent.agents.loader import load_agent
    from duragent.config import DuragentConfig
    from duragent.runtime.approvals import ApprovalBroker
    from duragent.runtime.loop import Runtime
    from duragent.runtime.providers import ProviderPool
    from duragent.sessions.manager import SessionManager

    directory = root / "agents" / "helper"
    directory.mkdir(parents=True)
    yaml = AGENT_YAML.format(
        name="helper", url=llm_url, on_disconnect="continue", max_background=max_background
    )
    (directory / "agent.yaml").write_text(yaml)
    agent, _ = load_agent(directory, env=CHILD_ENV)
    providers = ProviderPool(CHILD_ENV)
    runtime = Runtime(
        provider_for=providers.for_agent, approvals=ApprovalBroker(), workdir_for=lambda _: root
    )
    manager = SessionManager(
        store, runtime, DuragentConfig.model_validate({}), lambda name: agent, ownership=ownership
    )
    try:
        yield manager
    finally:
        await manager.close(grace=0)
        await store.close()
        await providers.close()


def write_workspace(
    root: Path,
    llm_url: str,
    *,
    api_token: str | None = None,
    admin_token: str | None = None,
    git: bool = True,
    agents: dict[str, str] | None = None,
    max_background: str = "30m",
    server_extra: str = "",
    fsync: str = "never",
) -> Path:
    """A config file and a data directory with agents `helper` (continue) and `pauser` (pause)."""
    data = root / "data"
    agents = agents or {"helper": "continue", "pauser": "pause"}
    for name, mode in agents.items():
        folder = data / "agents" / name
        folder.mkdir(parents=True)
        (folder / "agent.yaml").write_text(
            AGENT_YAML.format(name=name, url=llm_url, on_disconnect=mode, max_background=max_background)
        )
    (data / ".gitignore").write_text("run/\n.locks/\n*.lock\n")
    lines = [
        f"data_dir: {data}",
        "session:",
        f"  fsync: {fsync}",
        "git:",
        f"  enabled: {'true' if git else 'false'}",
    ]
    lines += ["  commit_debounce: 100ms", "  max_commit_delay: 500ms"]
    lines += ["server:", "  host: 127.0.0.1"]
    lines += [line for line in server_extra.splitlines() if line]
    if api_token:
        lines.append(f"  api_token: {api_token}")
    if admin_token:
        lines += ["admin:", f"  token: {admin_token}"]
    config = root / "duragent.yaml"
    config.write_text("\n".join(lines) + "\n")
    if git:
        # as `duragent init` leaves it: a repository with the agents committed
        for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
            subprocess.run(["git", *command], cwd=data, check=True, capture_output=True)
    return config


@dataclass
class SSEEvent:
    """One server-sent event."""

    event: str
    data: dict[str, Any]
    id: str | None


async def read_sse(response: aiohttp.ClientResponse) -> AsyncIterator[SSEEvent]:
    """Parse an event stream into events (comments skipped)."""
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "event" in fields or "data" in fields:
                yield SSEEvent(
                    fields.get("event", "message"), json.loads(fields.get("data", "{}")), fields.get("id")
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value


async def collect_until(
    response: aiohttp.ClientResponse, last: str = "done", limit: int = 500
) -> list[SSEEvent]:
    """Events until (and including) the first named `last`."""
    events = []
    async for event in read_sse(response):
        events.append(event)
        if event.event == last or len(events) >= limit:
            break
    return events


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServeProcess:
    """A real `duragent serve` child process."""

    process: subprocess.Popen[str]
    url: str
    config: Path
    log_path: Path
    #: The environment the server runs with (its duragent.yaml's ${VARS} are read from it).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        """The tokens this server requires (its workspace's run/tokens.json or duragent.yaml's)."""
        return auth_headers(load_config(self.config, env=self.env), env=self.env)

    def log(self) -> str:
        """What the server wrote to stderr."""
        return self.log_path.read_text()

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM and wait; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL and reap."""
        self.process.kill()
        self.process.wait(timeout=10)


def cli(
    config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run `duragent -c config ...` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "duragent", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **CHILD_ENV, **(env or {})},
    )


def start_serve(config: Path, log_path: Path, *args: str, env: dict[str, str] | None = None) -> ServeProcess:
    """Start `duragent serve` on a free port and wait until it answers /livez."""
    port = free_port()
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "duragent",
            "-c",
            str(config),
            "serve",
            "--port",
            str(port),
            "--grace",
            "3",
            *args,
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **CHILD_ENV, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60  # a Python start on a machine busy with other test runs
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"duragent serve exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        raise RuntimeError(f"duragent serve did not start:\n{log_path.read_text()}")
    return ServeProcess(process, url, config, log_path, {**os.environ, **CHILD_ENV, **(env or {})})


class Api:
    """A client of one in-process server."""

    def __init__(self, server: TestServer, http: aiohttp.ClientSession):
        self.server = server
        self.http = http

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def anonymous(self) -> aiohttp.ClientSession:
        """A client without the workspace's tokens (use as `async with api.anonymous() as http`)."""
        return aiohttp.ClientSession()

    async def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.url(path), json=body, **kwargs) as response:
            if response.content_type in ("application/json", "application/problem+json"):
                return response.status, await response.json(content_type=None)
            return response.status, await response.text()

    async def new_session(self, agent: str = "helper") -> str:
        status, body = await self.call("POST", "/api/v1/sessions", {"agent": agent})
        assert status == 201, body
        return str(body["session_id"])


ApiFactory = Callable[..., Any]


async def start_test_server(server: TestServer) -> TestServer:
    """`server` started; closed again (its app's cleanup run) when starting fails half way.

    A fixture whose setup fails never reaches its teardown: without this, a server whose startup
    hook raised would keep its runner, its threads and its data directory lock.
    """
    try:
        await server.start_server()
    except BaseException:
        await server.close()
        raise
    return server


@pytest.fixture
async def start_api(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[ApiFactory]:
    """Start the app for a workspace in tmp_path; stopped (gracefully) at the end."""
    started: list[tuple[TestServer, aiohttp.ClientSession]] = []

    async def start(**options: Any) -> Api:
        keep_alive = options.pop("keep_alive", 15.0)
        config_path = write_workspace(tmp_path / f"ws{len(started)}", fake_llm.url, **options)
        config = load_config(config_path)
        app = create_app(
            config, env=CHILD_ENV, keep_alive=keep_alive, shutdown_grace=2, idle_ttl=timedelta(minutes=5)
        )
        server = await start_test_server(TestServer(app, host="127.0.0.1"))
        # the tokens the server requires: the workspace's (run/tokens.json) or duragent.yaml's
        http = aiohttp.ClientSession(headers=auth_headers(config))
        started.append((server, http))
        return Api(server, http)

    yield start
    for server, http in reversed(started):
        await http.close()
        await server.close()


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False)
    return result


@contextlib.asynccontextmanager
async def serving_gateways(
    config_path: Path, within: float = 30.0
) -> AsyncIterator[tuple[TestServer, aiohttp.ClientSession]]:
    """The app of `config_path` with its gateway plugin, once the plugin is ready (`within`
    seconds at most), and a client with the workspace's tokens; stopped gracefully at the end."""
    from tests.waiting import eventually

    config = load_config(config_path)
    app = create_app(config, env=CHILD_ENV, shutdown_grace=2, idle_ttl=timedelta(minutes=5))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    http = aiohttp.ClientSession(headers=auth_headers(config))

    async def ready() -> bool | None:
        async with http.get(server.make_url("/api/admin/v1/gateways")) as response:
            return True if (await response.json())["gateways"][0]["state"] == "ready" else None

    try:
        await eventually(ready, within=within)
        yield server, http
    finally:
        await http.close()
        await server.close()


@contextlib.asynccontextmanager
async def serving_background_processes(
    root: Path, llm_url: str, agent: str = "helper", *, git: bool = True
) -> AsyncIterator[tuple[Api, Path]]:
    """The app serving a workspace (`write_workspace`) whose agent `agent` may start background
    processes; the API and the data directory."""
    config_path = write_workspace(root, llm_url, git=git)
    data = root / "data"
    definition = data / "agents" / agent / "agent.yaml"
    definition.write_text(
        definition.read_text().replace("builtin: [bash]", "builtin: [bash, background_process]")
    )
    config = load_config(config_path)
    app = create_app(config, env=CHILD_ENV, shutdown_grace=2, idle_ttl=timedelta(minutes=5))
    server = await start_test_server(TestServer(app, host="127.0.0.1"))
    http = aiohttp.ClientSession(headers=auth_headers(config))
    try:
        yield Api(server, http), data
    finally:
        await http.close()
        await server.close()
