"""duragent.yaml: the one model tree, its defaults, and loading with `file:line` errors.

Relative paths are resolved against the directory of the configuration file (or the
current directory when there is none), so a workspace behaves the same from anywhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from duragent.agents.spec import WebSearchSpec
from duragent.durations import Duration, format_duration
from duragent.errors import ConfigError, Location, Problem
from duragent.mcp.spec import McpServers
from duragent.validation import dotted, validate_document
from duragent.yaml_source import FieldPath, YamlDocument, load_yaml_file, load_yaml_text

CONFIG_FILENAME = "duragent.yaml"
#: The port `duragent serve` listens on when neither --port nor server.port says otherwise.
DEFAULT_PORT = 8080
DEFAULT_DATA_DIR = ".duragent"
OnDisconnect = Literal["continue", "pause"]
_AUTHOR = re.compile(r"[^<>\n]*[^<>\s][^<>\n]* <[^<>\s]+>")


class ConfigModel(BaseModel):
    """Base of every configuration section: immutable, unknown keys ignored (and warned about)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class ServerConfig(ConfigModel):
    """The HTTP server: where it listens and the token guarding `/api/v1`."""

    host: str = Field("127.0.0.1", description="Address to bind; non-loopback binds need tokens.")
    port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="TCP port of the HTTP API. Unset: a free port for a server send/chat start, "
        "8080 for `duragent serve`.",
    )
    api_token: str | None = Field(
        None, description="Bearer token for /api/v1 (use ${VAR}); default: <data_dir>/run/tokens.json."
    )
    allowed_hosts: list[str] = Field(
        [], description="Host names besides loopback the server answers to (`*`: any, e.g. behind a proxy)."
    )
    allowed_origins: list[str] = Field(
        [],
        description="Browser origins allowed to call the API (and sent CORS headers), e.g. https://ui.example.",
    )


class ServiceConfig(ConfigModel):
    """Where one kind of state lives. Keys other than `backend` apply to some backends only."""

    backend: str = "filesystem"
    path: Path | None = Field(None, description="filesystem: folder (default under data_dir).")
    url: str | None = Field(None, description="postgres: connection URL, e.g. ${DATABASE_URL}.")
    bucket: str | None = Field(None, description="s3: bucket name.")
    region: str | None = Field(None, description="s3: region, e.g. us-east-1.")
    endpoint_url: str | None = Field(None, description="s3: endpoint of MinIO or another S3 server.")
    prefix: str | None = Field(None, description="s3: key prefix inside the bucket.")
    presign_ttl: Duration = Field(
        timedelta(hours=1), description="s3: how long presigned artifact URLs stay valid."
    )

    @field_validator("endpoint_url")
    @classmethod
    def _a_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"give a URL starting with http:// or https://, got {value!r}")
        try:
            # botocore would only fail at the first request, with a traceback at serve's start.
            parts = urlsplit(value)
            port = parts.port  # (reading it checks it: a number from 0 to 65535)
        except ValueError as error:
            raise ValueError(f"{value!r} is not a valid URL: {error}") from error
        if not parts.hostname:
            raise ValueError(f"{value!r} names no host")
        if port == 0:
            raise ValueError(f"{value!r} is not a valid URL: Port out of range 1-65535")
        return value


class SessionServiceConfig(ServiceConfig):
    """Where session event logs and snapshots live."""

    backend: Literal["filesystem", "postgres"] = "filesystem"


class MemoryServiceConfig(ServiceConfig):
    """Where agents' memory lives."""

    backend: Literal["filesystem", "postgres"] = "filesystem"


class ArtifactServiceConfig(ServiceConfig):
    """Where files produced by agents live."""

    backend: Literal["filesystem", "s3"] = "filesystem"
    connect_timeout: Duration = Field(
        timedelta(seconds=5), description="s3: longest wait for a connection to the S3 server."
    )
    read_timeout: Duration = Field(
        timedelta(seconds=30), description="s3: longest wait for the next bytes of an answer."
    )
    max_attempts: int = Field(
        3, ge=1, le=10, description="s3: tries per request (the first and the retries) before it fails."
    )


class ServicesConfig(ConfigModel):
    """The three stores, chosen per service so backends can be mixed."""

    session: SessionServiceConfig = SessionServiceConfig()
    memory: MemoryServiceConfig = MemoryServiceConfig()
    artifacts: ArtifactServiceConfig = Field(
        ArtifactServiceConfig(), validation_alias=AliasChoices("artifacts", "artifact")
    )


class HttpGatewayConfig(ConfigModel):
    """The built-in HTTP REST + SSE gateway."""

    enabled: bool = True
    port: int | None = Field(None, ge=0, le=65535, description="Defaults to server.port.")


class CliGatewayConfig(ConfigModel):
    """The built-in terminal gateway (`duragent chat` / `attach`)."""

    enabled: bool = True


class ExternalGatewayConfig(ConfigModel):
    """A platform gateway run as a subprocess speaking the gateway protocol over stdio."""

    name: str = Field(min_length=1)
    command: str = Field(min_length=1)
    args: list[str] = []
    env: dict[str, str] = {}
    config: dict[str, Any] = {}
    restart: Literal["always", "on_failure", "never"] = "on_failure"
    # None: the server's default (30s, 30s, 10s, 5s), which suits a home server.
    ready_timeout: Duration | None = Field(
        None, description="How long a started plugin has to say `ready` before it is restarted."
    )
    ping_interval: Duration | None = Field(None, description="How often a ready plugin is pinged.")
    pong_timeout: Duration | None = Field(
        None, description="How long a ping waits for its pong before the plugin is restarted."
    )
    stop_grace: Duration | None = Field(
        None,
        description="How long a stopping plugin has to exit after `shutdown` and SIGTERM before SIGKILL.",
    )

    @field_validator("ready_timeout", "ping_interval", "pong_timeout", "stop_grace")
    @classmethod
    def _between_10ms_and_an_hour(cls, value: timedelta | None) -> timedelta | None:
        # 0 would ping in a tight loop or restart the plugin at once; hours would stall a stop
        if value is not None and not timedelta(milliseconds=10) <= value <= timedelta(hours=1):
            raise ValueError(f"must be between 10ms and 1h, got {format_duration(value)}")
        return value


class GatewaysConfig(ConfigModel):
    """Core gateways (built in) and platform gateways (plugins)."""

    http: HttpGatewayConfig = HttpGatewayConfig()
    cli: CliGatewayConfig = CliGatewayConfig()
    external: list[ExternalGatewayConfig] = []


class RouteMatch(ConfigModel):
    """Conditions of a route; every one given must match (none given: matches everything)."""

    gateway: str | None = Field(None, description="Gateway name (case-insensitive).")
    chat_type: str | None = Field(None, description="dm, group or channel (case-insensitive).")
    chat_id: str | None = Field(None, description="Exact chat id.")
    sender_id: str | None = Field(None, description="Exact sender id.")


class RouteConfig(ConfigModel):
    """Which agent answers messages from gateway plugins; the first matching route wins."""

    match: RouteMatch = RouteMatch()
    agent: str = Field(min_length=1, description="Name of the agent that answers.")


class SessionConfig(ConfigModel):
    """Global session defaults; an agent's `spec.session` overrides them."""

    on_disconnect: OnDisconnect = Field(
        "continue",
        description="continue: keep working while detached; pause: stop at a safe point.",
    )
    max_background_runtime: Duration = Field(
        timedelta(minutes=30), description="Pause a session that has run unattended this long."
    )
    output_buffer_size: int = Field(
        1000, ge=0, description="Events kept in memory for clients that are away."
    )
    fsync: Literal["turn", "always", "never"] = Field(
        "turn",
        description="turn: fsync each acknowledged batch; always: every event; never: tests.",
    )
    snapshot_every: int = Field(
        20, ge=1, description="Write state.yaml every N events (less often in a long session)."
    )


class StaticAgentsConfig(ConfigModel):
    """Agents defined as folders on disk."""

    path: Path | None = Field(None, description="Default: <data_dir>/agents.")
    watch: bool = Field(True, description="Reload edited, added and removed agents without restart.")


class DynamicAgentsConfig(ConfigModel):
    """Agents deployed through the admin API."""

    path: Path | None = Field(None, description="Default: <data_dir>/sys/dyn_agents.")


class AgentsConfig(ConfigModel):
    """Where agent definitions come from and how many stay loaded."""

    static: StaticAgentsConfig = StaticAgentsConfig()
    dynamic: DynamicAgentsConfig = DynamicAgentsConfig()
    lazy_load: bool = Field(False, description="Load an agent's spec on first use.")
    cache_size: int = Field(1000, ge=1, description="Loaded agent specs kept (LRU).")


class AdminConfig(ConfigModel):
    """The admin API under /api/admin/v1."""

    enabled: bool = True
    token: str | None = Field(
        None, description="Bearer token for the admin API (use ${VAR}); default: <data_dir>/run/tokens.json."
    )


class GitConfig(ConfigModel):
    """Automatic commits of the data directory."""

    enabled: bool = True
    commit_debounce: Duration = Field(timedelta(seconds=2), description="Quiet time before a commit.")
    max_commit_delay: Duration = Field(
        timedelta(seconds=10), description="Longest a change waits under constant writes."
    )
    author: str = Field(
        "Duragent <duragent@localhost>",
        description="Author of the agent's commits, as `Name <email>`.",
    )

    @field_validator("author")
    @classmethod
    def _name_and_email(cls, value: str) -> str:
        # git refuses to commit with anything else, so every session would fail later.
        if not _AUTHOR.fullmatch(value):
            raise ValueError(
                f"must be `Name <email>` as git wants it (e.g. Duragent <duragent@localhost>), got {value!r}"
            )
        return value


class SchedulingConfig(ConfigModel):
    """Schedules (`.duragent/schedules/`): when missed runs still fire, how many run at once."""

    enabled: bool = Field(True, description="Fire schedules while the server runs.")
    misfire_grace: Duration = Field(
        timedelta(hours=1),
        description=(
            "A run missed while the server was down (a one-shot, or a recurring schedule's latest "
            "slot) still runs this late."
        ),
    )
    max_concurrent_runs: int = Field(5, ge=1, description="Runs delivered at the same time.")
    tasks_may_schedule: bool = Field(False, description="A scheduled task's turn may create schedules.")
    agent_min_interval: Duration = Field(
        timedelta(minutes=1),
        description="Shortest time between runs of a recurring schedule an agent makes itself.",
    )
    agent_max_active: int = Field(
        20, ge=0, description="Active schedules an agent may have made itself at once (0: none)."
    )
    runs_kept: int = Field(200, ge=1, description="Run history lines kept per schedule.")
    poll_interval: Duration = Field(
        timedelta(seconds=30), description="How often schedules are read again (edits by other workers)."
    )


class DuragentConfig(ConfigModel):
    """The whole of duragent.yaml."""

    server: ServerConfig = ServerConfig()
    data_dir: Path = Field(Path(DEFAULT_DATA_DIR), description="The data directory (a git repo).")
    services: ServicesConfig = ServicesConfig()
    gateways: GatewaysConfig = GatewaysConfig()
    routes: list[RouteConfig] = Field([], description="Gateway chats -> agents, first match wins.")
    session: SessionConfig = SessionConfig()
    agents: AgentsConfig = AgentsConfig()
    admin: AdminConfig = AdminConfig()
    git: GitConfig = GitConfig()
    scheduling: SchedulingConfig = SchedulingConfig()
    mcp_servers: McpServers = Field([], description="MCP servers offered to every agent (docs/mcp.md).")
    web_search: WebSearchSpec | None = Field(
        None, description="Where web_search searches for agents without their own tools.web_search."
    )

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir_named(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must name a folder (e.g. .duragent), not be empty")
        return value

    _source: Path | None = PrivateAttr(None)
    _document: YamlDocument | None = PrivateAttr(None)
    _warnings: list[Problem] = PrivateAttr(default_factory=list)
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def source(self) -> Path | None:
        """The file this configuration was read from, or None for the built-in defaults."""
        return self._source

    @property
    def warnings(self) -> list[Problem]:
        """Unknown keys and other things worth telling the user, with locations."""
        return self._warnings

    @property
    def base_dir(self) -> Path:
        """The directory relative paths are resolved against."""
        return self._base_dir

    @property
    def unset_gateway_variables(self) -> list[Problem]:
        """Gateway plugin settings reading a variable that is not set here (loaded with
        `gateway_variables_later`): the value the server would pass to the plugin is missing."""
        if self._document is None:
            return []
        problems = []
        for path, problem in self._document.unset_later.items():
            gateway = self.gateways.external[int(path[2])].name
            problems.append(
                Problem(
                    f"{problem.message}: gateway {gateway!r} needs it for {dotted(path)}", problem.location
                )
            )
        return problems

    def require_gateway_variables(self) -> None:
        """ConfigError for `unset_gateway_variables`: a server must not start a gateway without them."""
        problems = self.unset_gateway_variables
        if problems:
            raise ConfigError(problems)

    @property
    def referenced_env(self) -> set[str]:
        """Names of environment variables referenced as `${NAME}` (their values are secrets)."""
        return set(self._document.referenced_env) if self._document else set()

    def env_reference_paths(self, name: str) -> set[FieldPath]:
        """The settings that reference `${name}` (empty for a name the file does not reference)."""
        return set(self._document.reference_paths.get(name, ())) if self._document else set()

    def env_embedded(self, name: str) -> bool:
        """Whether `${name}` is part of a longer value somewhere (`https://${HOST}/v1`)."""
        return self._document is not None and name in self._document.embedded_env

    @property
    def referenced_env_outside_gateways(self) -> set[str]:
        """`referenced_env` less the names only gateway plugin settings read (when loaded with
        `gateway_variables_later`): what the server itself resolves at its start."""
        return set(self._document.referenced_now) if self._document else set()

    def locate(self, path: FieldPath) -> Location:
        """Where `path` (e.g. `("services", "session", "backend")`) is set, or the file itself."""
        if self._document is None:
            return Location(str(self._source) if self._source else "<defaults>")
        return self._document.locate(path)

    def resolve(self, path: Path) -> Path:
        """An absolute path: `~` expanded, relative ones joined to the config directory."""
        path = path.expanduser()
        return path if path.is_absolute() else (self._base_dir / path).resolve()

    @property
    def data_path(self) -> Path:
        """Absolute path of the data directory."""
        return self.resolve(self.data_dir)

    def service_path(self, service: Literal["session", "memory", "artifacts"]) -> Path:
        """Absolute folder of a filesystem-backed service."""
        configured: ServiceConfig = getattr(self.services, service)
        default = {"session": "sessions", "memory": "memory", "artifacts": "artifacts"}[service]
        return self.resolve(configured.path) if configured.path else self.data_path / default

    @property
    def agents_path(self) -> Path:
        """Absolute folder of static agent definitions."""
        static = self.agents.static.path
        return self.resolve(static) if static else self.data_path / "agents"

    def tool_workdir(self, agent: str) -> Path:
        """Where agent `agent`'s tools run: `<data_dir>/work/<agent>` (never its definition folder)."""
        return self.data_path / "work" / agent

    @property
    def dynamic_agents_path(self) -> Path:
        """Absolute folder the admin API writes deployed agents to."""
        dynamic = self.agents.dynamic.path
        return self.resolve(dynamic) if dynamic else self.data_path / "sys" / "dyn_agents"

    @property
    def workspace_hash(self) -> str:
        """sha256 of the data directory's path: how /readyz tells clients which workspace it serves."""
        import hashlib

        return hashlib.sha256(str(self.data_path).encode()).hexdigest()

    @property
    def http_port(self) -> int | None:
        """The port the HTTP gateway listens on, when one is configured."""
        return self.gateways.http.port if self.gateways.http.port is not None else self.server.port


def _settings_without_effect(config: DuragentConfig, doc: YamlDocument) -> list[Problem]:
    """Warnings for keys that are accepted (the seed's deployment files set them) but change nothing."""
    problems = []
    for name, gateway in (("http", config.gateways.http), ("cli", config.gateways.cli)):
        if not gateway.enabled:
            problems.append(
                Problem(
                    f"gateways.{name}.enabled: false has no effect: the server always serves its HTTP API, "
                    "which `duragent chat`, `attach`, `send` and the dashboard use (server.host and the "
                    "tokens decide who reaches it)",
                    doc.locate(("gateways", name, "enabled")),
                )
            )
    return problems


def _gateway_setting(path: FieldPath) -> bool:
    """A value under `gateways.external[i].config` or `.env`: only the gateway plugin reads it."""
    return len(path) >= 5 and path[:2] == ("gateways", "external") and path[3] in ("config", "env")


def load_config(
    path: Path | None = None,
    *,
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    required: bool = False,
    gateway_variables_later: bool = False,
) -> DuragentConfig:
    """Load duragent.yaml; a missing file gives the documented defaults unless `required`.

    A `${NAME}` whose variable is not set is an error naming it and its line; with
    `gateway_variables_later`, not in a gateway plugin's `config:` and `env:` (commands other than
    `serve` never use them, and a service's token may be set only in its own environment): those
    are `unset_gateway_variables`, raised by `require_gateway_variables` before a server starts.
    """
    env = os.environ if env is None else env
    explicit = path is not None or "DURAGENT_CONFIG" in env
    if path is None:
        path = Path(env.get("DURAGENT_CONFIG", CONFIG_FILENAME))
    path = path.expanduser()
    if path.is_dir():
        path = path / CONFIG_FILENAME
    doc: YamlDocument | None = None
    warnings: list[Problem] = []
    if path.exists():
        doc = load_yaml_file(path, env, unset_later=_gateway_setting if gateway_variables_later else None)
        config, warnings = validate_document(DuragentConfig, doc)
        warnings = [*warnings, *_settings_without_effect(config, doc)]
    elif required or explicit:
        raise ConfigError(f"{path}: no such configuration file (run `duragent init` to create one)")
    else:
        config = DuragentConfig()
    if data_dir is not None:
        config = config.model_copy(update={"data_dir": data_dir.expanduser().absolute()})
    config._source = path.resolve() if doc is not None else None
    config._document = doc
    config._warnings = warnings
    config._base_dir = path.resolve().parent if doc is not None else Path.cwd()
    if doc is not None and config.data_path == config.base_dir:
        # The data directory is its own git repository: it must not swallow the workspace root.
        raise ConfigError(
            "data_dir is the folder of duragent.yaml itself; use a folder inside it (e.g. .duragent)",
            doc.locate(("data_dir",)),
        )
    return config


def parse_config_text(
    text: str, source: str = CONFIG_FILENAME, env: Mapping[str, str] | None = None
) -> DuragentConfig:
    """Parse configuration from a string (for tests and the admin API)."""
    doc = load_yaml_text(text, source, os.environ if env is None else env)
    config, warnings = validate_document(DuragentConfig, doc)
    config._document = doc
    config._warnings = [*warnings, *_settings_without_effect(config, doc)]
    return config
