"""A worker whose duragent.yaml names a database or an S3 bucket it cannot use refuses to start,
naming the key and its line, instead of starting and failing later (or reading as a server bug)."""

from __future__ import annotations

import asyncio
import secrets
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from duragent.testing.postgres import postgres_test_url
from duragent.testing.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoS3Server, moto_s3  # noqa: F401
from tests.e2e.server_harness import cli, start_serve, write_workspace

S3_ENV = {"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}


def line_of(config: Path, key: str) -> int:
    """The 1-based line of duragent.yaml where `key:` is set."""
    lines = config.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if line.strip().startswith(f"{key}:"))


def with_artifacts_in(config: Path, moto: MotoS3Server, bucket: str) -> None:
    with config.open("a") as file:
        file.write(
            "services:\n  artifacts:\n    backend: s3\n"
            f"    bucket: {bucket}\n    region: {REGION}\n    endpoint_url: {moto.endpoint_url}\n"
        )


def on_a_missing_database(config: Path, *services: str) -> str:
    """Point `services` of duragent.yaml at a database the test server does not have; its name."""
    missing = f"review_no_such_db_{secrets.token_hex(4)}"
    url = urlunsplit(urlsplit(postgres_test_url())._replace(path=f"/{missing}"))
    with config.open("a") as file:
        file.write("services:\n")
        for service in services:
            file.write(f"  {service}:\n    backend: postgres\n    url: {url}\n")
    return missing


def test_a_worker_on_a_database_that_does_not_exist_names_services_session_url_and_its_line(
    tmp_path: Path,
) -> None:
    config = write_workspace(tmp_path, "http://127.0.0.1:9/v1", git=False)
    missing = on_a_missing_database(config, "session")

    refused = cli(config, "serve", "--port", "0", timeout=60)

    assert refused.returncode == 1, refused.stderr
    assert f"{config}:{line_of(config, 'url')}:" in refused.stderr
    assert "services.session.url: cannot connect to PostgreSQL" in refused.stderr
    assert missing in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("command", ["status", "upgrade"])
def test_db_commands_on_a_database_that_does_not_exist_name_the_url_keys_and_their_line(
    tmp_path: Path, command: str
) -> None:
    config = write_workspace(tmp_path, "http://127.0.0.1:9/v1", git=False)
    missing = on_a_missing_database(config, "session", "memory")

    refused = cli(config, "db", command, timeout=60)

    assert refused.returncode == 1, refused.stderr
    assert f"{config}:{line_of(config, 'url')}:" in refused.stderr
    assert "services.session.url, services.memory.url: cannot connect to PostgreSQL" in refused.stderr
    assert missing in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_worker_whose_bucket_does_not_exist_refuses_to_start_naming_services_artifacts_bucket(
    tmp_path: Path,
    moto_s3: MotoS3Server,  # noqa: F811
) -> None:
    config = write_workspace(tmp_path, "http://127.0.0.1:9/v1", git=False)
    with_artifacts_in(config, moto_s3, "review-missing-bucket")

    refused = cli(config, "serve", "--port", "0", env=S3_ENV, timeout=60)

    assert refused.returncode == 1, refused.stderr
    assert f"{config}:{line_of(config, 'bucket')}:" in refused.stderr
    assert "services.artifacts.bucket: S3 bucket 'review-missing-bucket' does not exist" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_worker_whose_bucket_exists_starts_and_is_ready(
    tmp_path: Path,
    moto_s3: MotoS3Server,  # noqa: F811
) -> None:
    config = write_workspace(tmp_path, "http://127.0.0.1:9/v1", git=False)
    with_artifacts_in(config, moto_s3, moto_s3.create_bucket())

    worker = start_serve(config, tmp_path / "serve.log", env=S3_ENV)
    try:
        with urllib.request.urlopen(f"{worker.url}/readyz", timeout=10) as ready:
            assert ready.status == 200
    finally:
        assert worker.terminate() == 0, worker.log()


def test_a_worker_whose_database_url_has_no_valid_port_names_services_session_url_and_its_line(
    tmp_path: Path,
) -> None:
    config = write_workspace(tmp_path, "http://127.0.0.1:9/v1", git=False)
    with config.open("a") as file:
        file.write(
            "services:\n  session:\n    backend: postgres\n    url: postgresql://duragent:s3cret@db:99999/app\n"
        )

    refused = cli(config, "serve", "--port", "0", timeout=60)

    assert refused.returncode == 2, refused.stderr
    assert f"{config}:{line_of(config, 'url')}:" in refused.stderr
    assert "services.session.url: the port of the host is not a number from 1 to 65535" in refused.stderr
    assert "s3cret" not in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        ("http://[::1", "'http://[::1' is not a valid URL: Invalid IPv6 URL"),
        ("http://127.0.0.1:99999", "'http://127.0.0.1:99999' is not a valid URL: Port out of range 0-65535"),
        ("http://:9000", "'http://:9000' names no host"),
        ("http://minio:0", "'http://minio:0' is not a valid URL: Port out of range 1-65535"),
    ],
)
def test_a_worker_whose_s3_endpoint_is_no_valid_url_names_services_artifacts_endpoint_url(
    tmp_path: Path, endpoint: str, problem: str
) -> None:
    config = write_workspace(tmp_path, "http://127.0.0.1:9/v1", git=False)
    with config.open("a") as file:
        file.write(
            f"services:\n  artifacts:\n    backend: s3\n    bucket: b\n    endpoint_url: '{endpoint}'\n"
        )

    refused = cli(config, "serve", "--port", "0", env=S3_ENV, timeout=60)

    assert refused.returncode == 2, refused.stderr
    assert f"{config}:{line_of(config, 'endpoint_url')}:" in refused.stderr
    assert f"services.artifacts.endpoint_url: {problem}" in refused.stderr
    assert "Traceback" not in refused.stderr


async def test_a_worker_on_a_schema_from_a_newer_duragent_names_services_session_url_and_its_line(
    tmp_path: Path,
) -> None:
    import asyncpg

    from duragent.stores.postgres.pool import parse_postgres_url
    from duragent.testing.postgres import temporary_schema

    async with temporary_schema() as url:
        target = parse_postgres_url(url)
        connection = await asyncpg.connect(target.dsn, server_settings={"search_path": target.schema})
        try:
            await connection.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await connection.execute("INSERT INTO schema_migrations (version, name) VALUES (42, 'future')")
        finally:
            await connection.close()
        config = write_workspace(tmp_path, "http://127.0.0.1:9/v1", git=False)
        with config.open("a") as file:
            file.write(f"services:\n  session:\n    backend: postgres\n    url: {url}\n")

        refused = await asyncio.to_thread(cli, config, "serve", "--port", "0", timeout=60)

    assert refused.returncode == 1, refused.stderr
    assert f"{config}:{line_of(config, 'url')}:" in refused.stderr
    assert "services.session.url: schema" in refused.stderr
    assert "migration(s) 0042 that this version" in refused.stderr  # (numbered as `db status` shows them)
    assert "upgrade Duragent" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_worker_with_memory_on_a_database_that_does_not_exist_names_services_memory_url_and_its_line(
    tmp_path: Path,
) -> None:
    config = write_workspace(tmp_path, "http://127.0.0.1:9/v1", git=False)
    missing = on_a_missing_database(config, "memory")

    refused = cli(config, "serve", "--port", "0", timeout=60)

    assert refused.returncode == 1, refused.stderr
    assert f"{config}:{line_of(config, 'url')}:" in refused.stderr
    assert "services.memory.url: cannot connect to PostgreSQL" in refused.stderr
    assert missing in refused.stderr
    assert "Traceback" not in refused.stderr
