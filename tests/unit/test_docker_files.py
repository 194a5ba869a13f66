"""The Dockerfile and examples/compose reference only commands, files, settings and ports that exist.

No Docker engine runs here: the files are parsed, every `duragent` command they run is parsed by
the real CLI, every file they copy or mount is looked up, the workers' duragent.yaml is validated,
and the healthcheck one-liner is run against a real HTTP server.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from duragent.cli import build_app
from duragent.config import DuragentConfig, parse_config_text

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "examples" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"


# --- reading the files ----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def instruction(name: str) -> list[str]:
    return [arguments for keyword, arguments in dockerfile_instructions() if keyword == name]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"use the exec (JSON) form: {arguments}"
    return [str(item) for item in value]


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (or a folder above it) out of the build context."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    return any(
        fnmatch.fnmatch(candidate, pattern.removeprefix("**/")) or fnmatch.fnmatch(candidate, pattern)
        for pattern in dockerignore_patterns()
        for candidate in candidates
    )


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def substitute(value: str) -> str:
    """Compose's `${VAR:-default}` / `${VAR:?message}` / `$$`, with a stand-in for required values."""

    def replace(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2), match.group(3)
        return rest if operator == ":-" else f"test-{name.lower()}"

    expanded = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}", replace, value)
    return expanded.replace("$$", "$")


def workers() -> dict[str, dict[str, Any]]:
    """The compose services that run the Duragent image."""
    found = {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image") == "duragent:local" or "build" in service
    }
    assert found
    return found


def worker_environment(service: dict[str, Any]) -> dict[str, str]:
    return {key: substitute(str(value)) for key, value in service["environment"].items()}


def worker_config(service: dict[str, Any]) -> DuragentConfig:
    """The duragent.yaml the worker mounts at $DURAGENT_CONFIG, validated with the worker's environment."""
    config_path = worker_environment(service)["DURAGENT_CONFIG"]
    host_file = bind_mounts(service)[config_path]
    return parse_config_text(host_file.read_text(), str(host_file), env=worker_environment(service))


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of the service's bind mounts (named volumes left out)."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (COMPOSE_DIR / source).resolve()
    return mounts


def nginx_conf() -> str:
    (lb,) = [service for service in compose()["services"].values() if "nginx" in service.get("image", "")]
    mounts = bind_mounts(lb)
    return mounts["/etc/nginx/nginx.conf"].read_text()


def cli_accepts(arguments: list[str]) -> tuple[int, str]:
    """Parse `duragent <arguments>` with the real CLI (adding --help, so nothing runs)."""
    result = CliRunner().invoke(build_app(), [*arguments, "--help"])
    return result.exit_code, result.output


# --- the Dockerfile -------------------------------------------------------------------------------


def test_the_image_is_slim_python_311_running_as_a_non_root_user() -> None:
    (base,) = instruction("FROM")
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", base)
    users = instruction("USER")
    assert users, "the image must not run as root"
    assert users[-1] not in ("root", "0")
    assert instruction("VOLUME"), "the data directory is a volume"


def test_every_copy_source_exists_and_is_not_kept_out_by_dockerignore() -> None:
    sources = [
        source
        for arguments in instruction("COPY")
        for source in arguments.split()[:-1]
        if not source.startswith("--")
    ]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such file in the build context"
        assert not ignored(source), f"COPY {source}: excluded by .dockerignore"


def test_everything_the_package_build_reads_is_copied() -> None:
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    copied = {source for arguments in instruction("COPY") for source in arguments.split()[:-1]}
    assert {"pyproject.toml", pyproject["project"]["readme"], "duragent"} <= copied
    (install,) = [run for run in instruction("RUN") if "pip install" in run]
    extras = re.search(r'"\.\[([^\]]+)\]"', install)
    assert extras is not None
    assert set(extras.group(1).split(",")) == {"postgres", "s3"}
    assert {"postgres", "s3"} <= set(pyproject["project"]["optional-dependencies"])


def test_entrypoint_and_cmd_are_a_duragent_command_the_cli_accepts() -> None:
    (entrypoint,) = instruction("ENTRYPOINT")
    (cmd,) = instruction("CMD")
    assert exec_form(entrypoint) == ["duragent"]
    assert exec_form(cmd) == ["serve", "--host", "0.0.0.0"]
    code, output = cli_accepts(exec_form(cmd))
    assert code == 0, output


@pytest.fixture
def readiness_server() -> Iterator[tuple[int, list[int]]]:
    """A real HTTP server on a free loopback port whose /readyz answers the status put in the list."""
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status[0] if self.path == "/readyz" else 404)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], status
    finally:
        server.shutdown()
        server.server_close()


def test_the_healthcheck_passes_when_ready_and_fails_on_503_without_curl(
    readiness_server: tuple[int, list[int]],
) -> None:
    port, status = readiness_server
    (healthcheck,) = instruction("HEALTHCHECK")
    command = exec_form(healthcheck[healthcheck.index("CMD") + len("CMD") :].strip())
    assert command[:2] == ["python", "-c"]
    assert "/readyz" in command[2]
    assert "curl" not in healthcheck
    env = {"DURAGENT_PORT": str(port), "PATH": ""}

    def check() -> int:
        return subprocess.run(
            [sys.executable, "-c", command[2]], env=env, capture_output=True, timeout=10
        ).returncode

    assert check() == 0
    status[0] = 503
    assert check() != 0


# --- the compose example --------------------------------------------------------------------------


def test_compose_runs_postgres_minio_with_a_bucket_two_workers_and_a_load_balancer() -> None:
    services = compose()["services"]
    images = {name: str(service.get("image", "")) for name, service in services.items()}
    assert any(image.startswith("postgres") for image in images.values())
    assert any(image.startswith("minio/minio") for image in images.values())
    assert any("mc mb" in str(service.get("command", "")) for service in services.values())
    assert len(workers()) >= 2
    assert any(image.startswith(("nginx", "haproxy")) for image in images.values())
    for service in workers().values():
        build = service["build"]
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert (context / build.get("dockerfile", "Dockerfile")).is_file()


def test_every_file_compose_mounts_exists() -> None:
    for name, service in compose()["services"].items():
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name}: mounts {source} at {target}, which does not exist"


def test_worker_commands_are_duragent_commands_the_cli_accepts() -> None:
    for name, service in workers().items():
        code, output = cli_accepts(service["command"])
        assert code == 0, f"{name}: {output}"


def test_the_workers_configuration_validates_and_keeps_state_in_postgres_and_minio() -> None:
    services = compose()["services"]
    for name, service in workers().items():
        config = worker_config(service)
        assert config.warnings == [], f"{name}: {config.warnings}"
        assert (config.services.session.backend, config.services.memory.backend) == ("postgres", "postgres")
        assert config.services.artifacts.backend == "s3"
        assert config.gateways.external == []
        database = urlsplit(str(config.services.session.url))
        assert str(services[str(database.hostname)]["image"]).startswith("postgres")
        minio = urlsplit(str(config.services.artifacts.endpoint_url))
        assert str(services[str(minio.hostname)]["image"]).startswith("minio/minio")
        assert minio.port == 9000
        bucket_commands = " ".join(str(service.get("command", "")) for service in services.values())
        assert f"local/{config.services.artifacts.bucket}" in bucket_commands
        agents = bind_mounts(service)[str(config.agents.static.path)]
        assert (agents / "assistant" / "agent.yaml").is_file()


def test_every_variable_the_configuration_reads_is_given_to_the_workers() -> None:
    for name, service in workers().items():
        missing = worker_config(service).referenced_env - set(service["environment"])
        assert not missing, f"{name} does not set {sorted(missing)}"
        for secret in ("DURAGENT_API_TOKEN", "DURAGENT_ADMIN_TOKEN", "AWS_SECRET_ACCESS_KEY"):
            assert "${" in str(service["environment"][secret]), f"{secret} must come from the environment"


def test_ports_agree_between_worker_config_command_healthcheck_and_load_balancer() -> None:
    conf = nginx_conf()
    upstream = dict(re.findall(r"server\s+([\w-]+):(\d+)", conf))
    assert set(upstream) == set(workers())
    for name, service in workers().items():
        config_port = worker_config(service).server.port
        command = service["command"]
        assert int(command[command.index("--port") + 1]) == config_port
        assert int(worker_environment(service)["DURAGENT_PORT"]) == config_port
        assert int(upstream[name]) == config_port
    (lb,) = [service for service in compose()["services"].values() if "nginx" in service.get("image", "")]
    listen = re.search(r"listen\s+(\d+)", conf)
    assert listen is not None
    assert all(mapping.split(":")[-1] == listen.group(1) for mapping in lb["ports"])


def test_the_load_balancer_passes_server_sent_events_through_unbuffered_and_keeps_streams_open() -> None:
    conf = nginx_conf()
    assert re.search(r"proxy_buffering\s+off;", conf)
    assert re.search(r"proxy_http_version\s+1\.1;", conf)
    timeout = re.search(r"proxy_read_timeout\s+(\d+)([smhd]?);", conf)
    assert timeout is not None
    seconds = int(timeout.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[timeout.group(2)]
    assert seconds >= 3600


def test_workers_start_after_the_database_and_the_bucket_exist() -> None:
    for name, service in workers().items():
        depends = service["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["minio-buckets"]["condition"] == "service_completed_successfully", name
