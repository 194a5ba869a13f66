"""`duragent doctor`: check that this machine and workspace can run the agents, and how to fix them.

Each check is a `Check(name, status, message, hint)`. Checks that touch the network (model
endpoints, PostgreSQL, S3) run concurrently, each bounded by the same timeout, so the whole
report takes at most about that long. Nothing here changes any file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Awaitable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from duragent.agents.loader import Agent
    from duragent.client.runfile import RunInfo
    from duragent.config import DuragentConfig

Status = Literal["ok", "warn", "fail"]
DEFAULT_TIMEOUT = 3.0
MIN_PYTHON = (3, 11)

#: Where each provider is reached when the agent sets no `base_url`.
DEFAULT_ENDPOINTS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "openrouter": "https://openrouter.ai/api/v1",
    "ollama": "http://127.0.0.1:11434",
}
_STATUS_ORDER: dict[Status, int] = {"ok": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Check:
    """The outcome of one check, and what to do about it when it is not ok."""

    name: str
    status: Status
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class DoctorReport:
    """Every check, in the order they were made."""

    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> Status:
        """The worst status of any check: `fail` if one failed, else `warn` if one warned, else `ok`."""
        worst: Status = "ok"
        for check in self.checks:
            if _STATUS_ORDER[check.status] > _STATUS_ORDER[worst]:
                worst = check.status
        return worst

    def to_dict(self) -> dict[str, Any]:
        """`{"status": ..., "checks": [{name, status, message, hint}, ...]}` for `--json`."""
        return {"status": self.status, "checks": [asdict(check) for check in self.checks]}


def run_doctor(
    config_path: Path | None = None,
    *,
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    wait_seconds: float = DEFAULT_TIMEOUT,
) -> DoctorReport:
    """Run every check against the workspace of `config_path` (default ./duragent.yaml)."""
    return asyncio.run(diagnose(config_path, data_dir=data_dir, env=env, wait_seconds=wait_seconds))


async def diagnose(
    config_path: Path | None = None,
    *,
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    wait_seconds: float = DEFAULT_TIMEOUT,
) -> DoctorReport:
    """The checks of `run_doctor`, for callers already inside an event loop."""
    env = os.environ if env is None else env
    checks = [check_python()]
    config, config_check = check_config(config_path, data_dir, env)
    checks.append(config_check)
    if config is None:
        # Without a configuration nothing else can be located; git is still worth knowing.
        checks.append(check_git_installed(git_enabled=True))
        return DoctorReport(checks)

    checks.append(check_data_dir(config.data_path))
    checks.append(check_git_installed(config.git.enabled))
    if config.git.enabled and shutil.which("git") and config.data_path.is_dir():
        checks.append(check_data_repo(config.data_path, config))
    agent_checks, agents = check_agents(config, env)
    checks += agent_checks
    checks += [check_provider_key(agent, env) for agent in agents]
    checks += check_secrets_in_agent_files(config)
    server = check_running_server(config, agents, env)
    checks += [server] if server is not None else []

    probes: list[Awaitable[Check]] = [
        check_endpoint(url, users, env, wait_seconds) for url, users in _endpoints(agents).items()
    ]
    probes += [
        check_postgres(url, services, wait_seconds) for url, services in _postgres_urls(config).items()
    ]
    probes += [check_s3(config, wait_seconds)] if config.services.artifacts.backend == "s3" else []
    checks += await asyncio.gather(*probes)
    checks += check_gateway_commands(config, env)
    checks += check_gateway_variables(config)
    checks += check_gateway_access(config, agents)
    checks += check_mcp_commands(config, agents, env)
    checks += check_skills_and_tool_folders(config, agents)
    if config.services.session.backend != "postgres":  # (rows in PostgreSQL were checked when written)
        checks.append(await check_schedule_files(config))
    checks.append(check_tmux(agents, env))
    return DoctorReport(checks)


def check_python() -> Check:
    """The interpreter is new enough."""
    version = ".".join(str(part) for part in sys.version_info[:3])
    if sys.version_info[:2] >= MIN_PYTHON:
        return Check("python", "ok", f"Python {version}")
    wanted = ".".join(str(part) for part in MIN_PYTHON)
    return Check("python", "fail", f"Python {version} is too old", f"install Python {wanted} or newer")


def check_config(
    config_path: Path | None, data_dir: Path | None, env: Mapping[str, str]
) -> tuple[DuragentConfig | None, Check]:
    """duragent.yaml parses and validates; unknown keys and the like are warnings."""
    from duragent.config import load_config
    from duragent.errors import ConfigError

    try:
        config = load_config(config_path, data_dir=data_dir, env=env, gateway_variables_later=True)
    except ConfigError as exc:
        return None, Check(
            "config", "fail", str(exc), "fix what is listed above; `duragent schema config` shows every key"
        )
    if config.source is None:
        # Most likely run from the wrong folder: say so before the failures that follow from it.
        return config, Check(
            "config",
            "warn",
            "not a Duragent workspace: no duragent.yaml here or in any parent folder "
            "(the checks below use the defaults)",
            "cd into your workspace, or run `duragent init` to make one here",
        )
    if config.warnings:
        message = "\n".join(str(warning) for warning in config.warnings)
        return config, Check("config", "warn", message, "unknown keys are ignored: fix or remove them")
    return config, Check("config", "ok", f"{config.source} is valid")


def check_data_dir(path: Path) -> Check:
    """The data directory exists and a file can be created in it."""
    name = "data dir"
    if not path.exists():
        return Check(name, "fail", f"{path} does not exist", "run `duragent init` in the workspace folder")
    if not path.is_dir():
        return Check(
            name, "fail", f"{path} is not a directory", "point data_dir in duragent.yaml at a folder"
        )
    try:
        # Creating a real file is the only reliable test (permissions, read-only mounts, quotas).
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-", suffix=".tmp"):
            pass
    except OSError as exc:
        return Check(
            name, "fail", f"{path} is not writable: {exc.strerror}", f"fix the permissions of {path}"
        )
    from duragent.private_data_dir import shared_bits

    shared = shared_bits(path)
    if shared:
        who = "other users of this machine" if shared & 0o007 else "its group"
        return Check(
            name,
            "warn",
            f"{path} is mode {stat.S_IMODE(path.stat().st_mode):o}: {who} can read every "
            "conversation, memory and log below it, and their history",
            f"chmod 700 {shlex.quote(str(path))}",
        )
    return Check(name, "ok", f"{path} is writable, by its owner alone")


def check_git_installed(git_enabled: bool) -> Check:
    """A git executable is on PATH (needed for the history of the data directory)."""
    if not git_enabled:
        return Check("git", "ok", "automatic commits are off (git.enabled: false)")
    executable = shutil.which("git")
    if executable is None:
        return Check(
            "git", "warn", "git is not on PATH: state is saved but its history is not recorded", "install git"
        )
    try:
        version = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=DEFAULT_TIMEOUT, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("git", "fail", f"{executable} does not run: {exc}", "reinstall git")
    return Check("git", "ok", version)


def check_data_repo(path: Path, config: DuragentConfig | None = None) -> Check:
    """The data directory is its own healthy git repository, with no stale lock and nothing the
    stores wrote left uncommitted."""
    import git

    from duragent.vcs.repo import stale_git_lock

    name = "data repo"
    try:
        repo = git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return Check(
            name,
            "warn",
            f"{path} is not a git repository: its history is not recorded",
            "run `duragent init` again (it only adds what is missing)",
        )
    except git.GitError as exc:
        return Check(
            name, "fail", f"{path}: git cannot open it: {exc}", f"inspect it with `git -C {path} status`"
        )
    with repo:
        stale = stale_git_lock(Path(repo.git_dir))
        if stale is not None:
            return Check(name, "fail", stale.problem, stale.hint)
        if not repo.head.is_valid():
            return Check(
                name, "warn", f"{path} has no commits yet", f"commit it: git -C {path} add -A && git commit"
            )
        head = repo.head.commit.hexsha[:7]
    detached = _detached_head(path)
    if detached is not None:
        return Check(name, "warn", f"{detached}: nothing is committed until then")
    uncommitted = _uncommitted(path, config)
    if not uncommitted:
        return Check(name, "ok", f"{path} is a repository at {head}")
    files = f"{len(uncommitted)} file{'s' if len(uncommitted) != 1 else ''}"
    if _server_running(path):
        # its committer waits for a quiet moment (git.commit_debounce) before committing them
        return Check(
            name,
            "ok",
            f"{path} is a repository at {head}; the running server has {files} still to commit: "
            + _summarise_folders(uncommitted),
        )
    return Check(
        name,
        "warn",
        f"{files} not committed: " + _summarise_folders(uncommitted),
        "a server that stopped before committing left them: the next `duragent serve` commits the "
        f"stores' files; see `git -C {path} status`",
    )


def _detached_head(path: Path) -> str | None:
    """What to say of a data repository left on no branch (commits wait for one), else None."""
    from duragent.vcs.repo import GitError, GitRepo

    try:
        return GitRepo.open_or_init(path, create=False).detached_head()
    except GitError:
        return None


def _server_running(data_path: Path) -> bool:
    from duragent.client.runfile import read_run_info

    return read_run_info(data_path) is not None


def _uncommitted(path: Path, config: DuragentConfig | None) -> list[str]:
    """Files in the stores' folders that differ from HEAD (a person's own edits are theirs to commit)."""
    from duragent.vcs.repo import GitError, GitRepo
    from duragent.workspace import store_folders

    if config is None:
        return []
    try:
        repo = GitRepo.open_or_init(path, create=False)
        folders = [folder for folder in store_folders(config) if folder.is_dir()]
        inside = [folder for folder in folders if _inside(folder, path)]
        return repo.changed_paths(under=inside) if inside else []
    except GitError:
        return []


def _inside(folder: Path, root: Path) -> bool:
    return folder.resolve().is_relative_to(root.resolve())


def _summarise_folders(files: list[str], most: int = 5) -> str:
    """`sessions/s_1 (2), memory/assistant (1)`: the changed files counted by their two top folders."""
    counts: dict[str, int] = {}
    for file in files:
        counts["/".join(file.split("/")[:2])] = counts.get("/".join(file.split("/")[:2]), 0) + 1
    shown = [f"{folder} ({count})" for folder, count in list(counts.items())[:most]]
    more = len(counts) - most
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def check_agents(config: DuragentConfig, env: Mapping[str, str]) -> tuple[list[Check], list[Agent]]:
    """Every agent folder loads; returns one check per agent and the agents that loaded."""
    from duragent.agents.loader import discover_agents, load_agent
    from duragent.errors import ConfigError

    folders = discover_agents(config.agents_path)
    if not folders:
        hint = "create one with `duragent init` (or `duragent agent create NAME`)"
        return [Check("agents", "warn", f"no agents in {config.agents_path}", hint)], []
    checks: list[Check] = []
    agents: list[Agent] = []
    for folder in folders:
        name = f"agent {folder.name}"
        try:
            agent, warnings = load_agent(folder, env)
        except ConfigError as exc:
            hint = "fix what is listed above; `duragent agent validate` shows the same problems"
            checks.append(Check(name, "fail", str(exc), hint))
            continue
        agents.append(agent)
        model = f"{agent.spec.model.provider}/{agent.spec.model.name}"
        if warnings:
            message = "\n".join(str(warning) for warning in warnings)
            checks.append(Check(name, "warn", f"valid ({model}), with warnings:\n{message}"))
        else:
            checks.append(Check(name, "ok", f"valid ({model})"))
    return checks, agents


def check_secrets_in_agent_files(config: DuragentConfig) -> list[Check]:
    """No agent's YAML file writes a secret in the clear (`api_key: ...`): git is never given one,
    so the file's edits are never committed while it holds it."""
    from duragent.secrets import literal_secrets

    checks = []
    for folder in dict.fromkeys((config.agents_path, config.dynamic_agents_path)):
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.suffix.lower() not in (".yaml", ".yml") or ".git" in path.relative_to(folder).parts:
                continue
            if not path.is_file():
                continue
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue  # (the agent's own check says why it does not load)
            for line, key in literal_secrets(text):
                checks.append(
                    Check(
                        f"secret in {path.name}",
                        "warn",
                        f"{path}:{line}: `{key}:` holds a secret written in the clear; its file's "
                        "changes are not committed while it does",
                        "put the secret in an environment variable and name it there instead "
                        "(`api_key_env: NAME`, or `${NAME}`); revoke it if it was committed before",
                    )
                )
    return checks


def check_provider_key(agent: Agent, env: Mapping[str, str]) -> Check:
    """The variable holding the agent's API key is set (its value is never shown)."""
    name = f"agent {agent.name} key"
    model = agent.spec.model
    variable = model.key_variable
    if model.provider == "demo":
        return Check(name, "ok", "the demo provider needs no key and no network")
    if variable is None:
        return Check(name, "ok", f"{model.provider} needs no API key")
    from duragent.llm.errors import UnusableApiKey
    from duragent.llm.registry import read_api_key

    try:
        key = read_api_key(env, variable, model.provider)
    except UnusableApiKey as exc:
        return Check(name, "fail", str(exc), f"export {variable}=... (the key alone, on one line)")
    if key:
        return Check(name, "ok", f"{variable} is set")
    if model.base_url is not None and model.api_key_env is None:
        # As the provider does (`create_provider`): a server of your own may take no key, and
        # the preset's variable is sent only when set.
        return Check(name, "ok", f"{variable} is not set: {model.base_url} is asked without a key")
    return Check(
        name,
        "fail",
        f"{variable} is not set, so {agent.name} cannot reach {model.provider}",
        f"export {variable}=... (agent.yaml names the variable; the value stays in the environment)",
    )


def check_running_server(config: DuragentConfig, agents: list[Agent], env: Mapping[str, str]) -> Check | None:
    """The workspace's running server (None when none runs) has the provider environment of this
    shell: keys and `duragent.yaml` are read when it starts, so an `export` since then, or an
    agent naming a variable it never read, is not seen until it starts again."""
    from duragent.client.runfile import read_run_info

    info = read_run_info(config.data_path)
    if info is None:
        return None
    name = "server"
    where = f"pid {info.pid} at {info.url}"
    restart = (
        "the next `duragent send` or `chat` restarts it once it is idle"
        if info.auto_started
        else "stop it with `duragent serve stop` and start `duragent serve` again from this shell"
    )
    said = _git_warnings(info.url)
    check = _environment_check(info, config, agents, env, where, restart)
    if not said:
        return check
    # (said with the rest: a key the server never read matters as much as commits waiting)
    return Check(name, "warn", "; ".join([check.message, *said]), check.hint)


def _environment_check(
    info: RunInfo,
    config: DuragentConfig,
    agents: list[Agent],
    env: Mapping[str, str],
    where: str,
    restart: str,
) -> Check:
    """The running server's provider environment and duragent.yaml against this shell's."""
    from duragent.client.runfile import config_digest

    name = "server"
    if info.env is None:
        return Check(name, "ok", where)
    unread = {
        agent.name: variable
        for agent in agents
        if (variable := agent.spec.model.key_variable) and variable not in info.env.names
    }
    if unread:
        named = ", ".join(f"agent {agent} named {variable}" for agent, variable in sorted(unread.items()))
        return Check(
            name,
            "warn",
            f"{where} started before {named}: the server may lack that variable, and the "
            "agent's turns then fail on a missing key",
            "`duragent serve stop`; the next `duragent send` or `chat` starts a server with this "
            "shell's environment",
        )
    if info.config_digest and info.config_digest != config_digest(config.source):
        return Check(name, "warn", f"{where} runs an older duragent.yaml", restart)
    changed = info.env.changed_in(env)
    if changed:
        names = ", ".join(changed)
        return Check(name, "warn", f"{where} started with another provider environment ({names})", restart)
    if not info.env.matches(env):
        # (this shell lacks a variable the server has: no reason to restart it, which would lose it)
        return Check(
            name, "ok", f"{where}, with provider variables this shell does not set, and duragent.yaml"
        )
    return Check(name, "ok", f"{where}, with this shell's provider environment and duragent.yaml")


def _git_warnings(url: str) -> list[str]:
    """What the running server's /readyz says of its git commits failing, and of files it leaves
    out of them for a secret ([]: nothing, or it did not answer: the server still serves turns,
    and its commits are its own to report)."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=3) as response:
            report = json.loads(response.read())
    except (OSError, ValueError):
        return []
    warnings = report.get("warnings", []) if isinstance(report, dict) else []
    said = ("commits failing", "is not committed: it holds a secret")
    return [
        line.removeprefix("git: ")
        for line in warnings
        if isinstance(line, str) and any(words in line for words in said)
    ]


def _endpoints(agents: list[Agent]) -> dict[str, list[str]]:
    """Each model endpoint and the agents using it (demo agents use none)."""
    endpoints: dict[str, list[str]] = {}
    for agent in agents:
        model = agent.spec.model
        url = model.base_url or DEFAULT_ENDPOINTS.get(model.provider)
        if url:
            endpoints.setdefault(url, []).append(agent.name)
    return endpoints


async def check_endpoint(url: str, users: list[str], env: Mapping[str, str], wait_seconds: float) -> Check:
    """A TCP connection to the endpoint (or to the proxy in front of it) opens within `wait_seconds`."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    name = f"endpoint {host}:{port}"
    proxy = _proxy_for(parts.scheme, host, env)
    target_host, target_port = (proxy.hostname or "", proxy.port or 80) if proxy else (host, port)
    via = f" through the proxy {target_host}:{target_port}" if proxy else ""
    error = await _connect_error(target_host, target_port, wait_seconds)
    if error is None:
        return Check(name, "ok", f"reachable{via} (used by {', '.join(users)})")
    return Check(
        name,
        "fail",
        f"cannot connect{via} within {wait_seconds:g} s: {error} (used by {', '.join(users)})",
        "check the network or proxy, or spec.model.base_url in agent.yaml",
    )


def _proxy_for(scheme: str, host: str, env: Mapping[str, str]) -> urllib.parse.SplitResult | None:
    """The proxy the provider clients would use for `scheme://host`, from the environment."""
    proxy = env.get(f"{scheme}_proxy") or env.get(f"{scheme.upper()}_PROXY")
    if not proxy:
        return None
    if _bypasses_proxy(host, env.get("no_proxy") or env.get("NO_PROXY") or ""):
        return None
    return urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")


def _bypasses_proxy(host: str, no_proxy: str) -> bool:
    """True when `host` matches `no_proxy` (`*`, a host name, or a domain suffix like `.corp`)."""
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        domain = entry.lstrip(".")
        if entry == "*" or (domain and (host.lower() == domain or host.lower().endswith("." + domain))):
            return True
    return False


async def _connect_error(host: str, port: int, wait_seconds: float) -> str | None:
    """None when a TCP connection opens in time, else why it did not."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait_seconds)
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        return exc.strerror or str(exc)
    writer.close()
    # The connection was made, which is all this check asks; a reset on close does not matter.
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


def _postgres_urls(config: DuragentConfig) -> dict[str | None, list[str]]:
    """Each PostgreSQL URL in `services` and the services using it."""
    urls: dict[str | None, list[str]] = {}
    for service in ("session", "memory", "artifacts"):
        settings = getattr(config.services, service)
        if settings.backend == "postgres":
            urls.setdefault(settings.url, []).append(service)
    return urls


async def check_postgres(url: str | None, services: list[str], wait_seconds: float) -> Check:
    """PostgreSQL accepts a connection within `wait_seconds` (credentials in the URL are never shown)."""
    name = f"postgres ({', '.join(services)})"
    if not url:
        key = f"services.{services[0]}.url"
        return Check(
            name, "fail", f"backend is postgres but {key} is not set", f"set {key}: ${{DATABASE_URL}}"
        )
    try:
        import asyncpg
    except ImportError:
        return Check(
            name,
            "fail",
            "not installed: pip install 'duragent[postgres]'",
            "pip install 'duragent[postgres]'",
        )
    where = _redacted(url)
    try:
        connection = await asyncio.wait_for(asyncpg.connect(dsn=url, timeout=wait_seconds), wait_seconds)
    except TimeoutError:
        return Check(
            name, "fail", f"{where}: no answer within {wait_seconds:g} s", "is PostgreSQL running there?"
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return Check(name, "fail", f"{where}: {exc}", "check the URL, the server and the credentials")
    await connection.close()
    return Check(name, "ok", f"{where} accepts connections")


def _redacted(url: str) -> str:
    """`postgresql://user:secret@db:5432/app` -> `db:5432/app`: enough to recognise, no secret."""
    parts = urllib.parse.urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname or 'localhost'}{port}{parts.path}"


async def check_s3(config: DuragentConfig, wait_seconds: float) -> Check:
    """The artifacts bucket answers HEAD within `wait_seconds` with the credentials of the environment."""
    settings = config.services.artifacts
    name = "s3 (artifacts)"
    if not settings.bucket:
        return Check(
            name, "fail", "backend is s3 but services.artifacts.bucket is not set", "set the bucket name"
        )
    try:
        from aiobotocore.session import get_session
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return Check(name, "fail", "not installed: pip install 'duragent[s3]'", "pip install 'duragent[s3]'")
    where = f"bucket {settings.bucket}" + (f" at {settings.endpoint_url}" if settings.endpoint_url else "")
    client_config = Config(
        connect_timeout=wait_seconds, read_timeout=wait_seconds, retries={"max_attempts": 1}
    )
    try:
        async with get_session().create_client(
            "s3", region_name=settings.region, endpoint_url=settings.endpoint_url, config=client_config
        ) as client:
            await asyncio.wait_for(client.head_bucket(Bucket=settings.bucket), wait_seconds)
    except TimeoutError:
        return Check(
            name,
            "fail",
            f"{where}: no answer within {wait_seconds:g} s",
            "check endpoint_url and the network",
        )
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchBucket", "NotFound"):
            return Check(
                name, "fail", f"{where} does not exist", "create it, or check services.artifacts.bucket"
            )
        return Check(
            name, "fail", f"{where}: {exc}", "check the bucket, region, endpoint_url and AWS credentials"
        )
    except (BotoCoreError, OSError) as exc:
        return Check(
            name, "fail", f"{where}: {exc}", "check the bucket, region, endpoint_url and AWS credentials"
        )
    return Check(name, "ok", f"{where} is reachable")


def check_gateway_commands(config: DuragentConfig, env: Mapping[str, str]) -> list[Check]:
    """Each platform gateway's command can be found (on PATH or beside duragent, or as a path)."""
    from duragent.gateways.manager import plugin_search_path

    checks = []
    for index, gateway in enumerate(config.gateways.external):
        name = f"gateway {gateway.name}"
        # As serve looks it up: on PATH, then beside the duragent command.
        found = shutil.which(gateway.command, path=plugin_search_path(env))
        if found:
            checks.append(Check(name, "ok", f"{gateway.command} is {found}"))
            continue
        where = config.locate(("gateways", "external", index, "command"))
        checks.append(
            Check(
                name,
                "fail",
                f"{where}: command {gateway.command!r} is not on PATH",
                "install the plugin that provides it, or fix gateways.external[].command",
            )
        )
    return checks


def check_gateway_variables(config: DuragentConfig) -> list[Check]:
    """A gateway setting reads a variable that is not set here: a server started from this shell
    would refuse to start (a service may well have it, in its own environment file)."""
    problems = config.unset_gateway_variables
    if not problems:
        return []
    message = "\n".join(str(problem) for problem in problems)
    hint = (
        "`duragent serve` refuses to start from this shell without it: export it here, or run the "
        "server where it is set (e.g. the systemd unit's EnvironmentFile, docs/gateways.md)"
    )
    return [Check("gateway variables", "warn", message, hint)]


def check_gateway_access(config: DuragentConfig, agents: list[Agent]) -> list[Check]:
    """Each agent a gateway route names answers someone, and not everyone unless told to."""
    if not config.gateways.external:
        return []
    routed = {route.agent for route in config.routes}
    return [_access_check(agent) for agent in agents if agent.name in routed]


def _access_check(agent: Agent) -> Check:
    name = f"access {agent.name}"
    access = agent.spec.access
    policies = {"dm": access.dm.policy, "groups": access.groups.policy}
    open_to_all = [key for key, policy in policies.items() if policy == "open"]
    if open_to_all:
        which = " and ".join("direct messages" if key == "dm" else "group chats" for key in open_to_all)
        message = f"{agent.source}: answers anyone in {which} (policy: open), who may approve its commands"
        return Check(name, "warn", message, f"list who may in spec.access.{open_to_all[0]}.allowlist instead")
    senders = len(access.dm.allowlist) if access.dm.policy == "allowlist" else 0
    chats = len(access.groups.allowlist) if access.groups.policy == "allowlist" else 0
    if not senders and not chats:
        message = f"{agent.source}: answers nobody on a chat platform (spec.access lists no sender or chat)"
        hint = "add your user id to spec.access.dm.allowlist (a denied sender's id is in the server log)"
        return Check(name, "warn", message, hint)
    return Check(name, "ok", f"answers {senders} sender(s) directly and {chats} group chat(s)")


def check_mcp_commands(config: DuragentConfig, agents: list[Agent], env: Mapping[str, str]) -> list[Check]:
    """Each stdio MCP server's command can be found, and the variables it is to get are set."""
    entries = [
        (f"mcp server {spec.name}", spec, config.locate(("mcp_servers", i)))
        for i, spec in enumerate(config.mcp_servers)
    ]
    for agent in agents:
        for i, spec in enumerate(agent.spec.mcp_servers):
            entries.append(
                (f"mcp server {agent.name}/{spec.name}", spec, agent.locate(("spec", "mcp_servers", i)))
            )
    checks = []
    for name, spec, where in entries:
        if spec.command is None:
            continue  # a URL is reached on first use; `duragent mcp list` connects to it
        found = shutil.which(spec.command, path=env.get("PATH"))
        if not found:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"{where}: command {spec.command!r} is not on PATH",
                    "install the MCP server (e.g. `pip install` or `uv tool install` it) or fix `command`",
                )
            )
            continue
        unset = [variable for variable in spec.env if variable not in env]
        if unset:
            checks.append(
                Check(
                    name,
                    "warn",
                    f"{spec.command} is {found}; {', '.join(unset)} not set, so not passed to it",
                    "set the variables in the environment `duragent serve` runs in",
                )
            )
        else:
            checks.append(Check(name, "ok", f"{spec.command} is {found}"))
    return checks


def check_skills_and_tool_folders(config: DuragentConfig, agents: list[Agent]) -> list[Check]:
    """Every SKILL.md and tool folder the agents see is valid: an invalid one is skipped at run time."""
    from duragent.skills.discovery import discover_skills
    from duragent.tools.folders import discover_tool_folders

    skills: set[Path] = set()
    folders: set[Path] = set()
    # Workspace-wide folders are seen by every agent: each problem is reported once, in order.
    skill_problems: dict[str, None] = {}
    folder_problems: dict[str, None] = {}
    places: list[tuple[Path | None, str | None]] = [(a.directory, a.spec.skills_dir) for a in agents]
    for agent_dir, skills_dir in places or [(None, None)]:
        found = discover_skills(agent_dir, config.data_path, skills_dir)
        skills.update(skill.path for skill in found.skills.values())
        skill_problems.update((str(problem), None) for problem in found.problems)
        tools, problems = discover_tool_folders(agent_dir, config.data_path)
        folders.update(tool.directory for tool in tools.values())
        folder_problems.update((str(problem), None) for problem in problems)
    return [
        _folders_check("skills", len(skills), list(skill_problems), "fix the SKILL.md at the place shown"),
        _folders_check(
            "tool folders",
            len(folders),
            list(folder_problems),
            "give each tool folder one executable `run` (or run.*) program: chmod +x it",
        ),
    ]


async def check_schedule_files(config: DuragentConfig) -> Check:
    """Every schedule file loads: one that does not never fires (the server logs it once)."""
    from duragent.scheduling.store import FileScheduleStore, schedules_folder

    store = FileScheduleStore(schedules_folder(config))
    try:
        listing = await store.load_all()
    finally:
        await store.close()
    problems = [str(problem) for problem in listing.problems]
    hint = "fix the file at the place shown, or remove it with `duragent schedule rm ID`"
    return _folders_check("schedules", len(listing.schedules), problems, hint)


def _folders_check(name: str, valid: int, problems: list[str], hint: str) -> Check:
    if not problems:
        return Check(name, "ok", f"{valid} valid" if valid else "none")
    listed = "\n".join(f"  {problem}" for problem in problems)
    return Check(name, "warn", f"{valid} valid, {len(problems)} skipped as invalid:\n{listed}", hint)


def check_tmux(agents: list[Agent], env: Mapping[str, str]) -> Check:
    """Whether tmux is installed: background processes run with `interactive: true` need it."""
    found = shutil.which("tmux", path=env.get("PATH"))
    if found:
        return Check("tmux", "ok", f"tmux is {found} (interactive background processes can run)")
    users = [agent.name for agent in agents if "background_process" in agent.spec.tools.builtin]
    if not users:
        return Check("tmux", "ok", "not installed; only interactive background processes need it")
    return Check(
        "tmux",
        "warn",
        f"tmux is not on PATH: background_process (agents {', '.join(users)}) cannot run "
        "interactive processes; the others run",
        "install tmux (apt install tmux, brew install tmux)",
    )
