"""A `services.*.url` that is no PostgreSQL URL is refused at its line of duragent.yaml, password unsaid."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from typer.testing import CliRunner

from duragent.cli import build_app
from duragent.config import parse_config_text
from duragent.errors import ConfigError
from duragent.stores.factory import open_memory_store, open_session_store
from duragent.testing.postgres import postgres_test_url


def test_an_invalid_schema_in_the_url_names_the_service_and_its_line() -> None:
    config = parse_config_text(
        "services:\n  session:\n    backend: postgres\n    url: postgresql://db/app?schema=Agents\n", env={}
    )
    with pytest.raises(
        ConfigError, match=r"services\.session\.url: invalid PostgreSQL schema 'Agents'"
    ) as raised:
        open_session_store(config)
    location = raised.value.problems[0].location
    assert location is not None
    assert location.line == 4


def test_a_url_of_another_database_names_the_service_and_its_line() -> None:
    config = parse_config_text(
        "services:\n  memory:\n    backend: postgres\n    url: mysql://db/app\n", env={}
    )
    with pytest.raises(ConfigError, match=r"services\.memory\.url: a PostgreSQL URL starts with") as raised:
        open_memory_store(config)
    location = raised.value.problems[0].location
    assert location is not None
    assert location.line == 4


def test_db_status_with_a_url_without_scheme_never_prints_its_password(tmp_path: Path) -> None:
    config = tmp_path / "duragent.yaml"
    config.write_text(
        "services:\n  session:\n    backend: postgres\n    url: '//duragent:s3cret@db:5432/app'\n"
    )
    result = CliRunner().invoke(build_app(), ["--config", str(config), "db", "status"])
    assert isinstance(result.exception, ConfigError)  # the CLI's error handler prints it, exit 2
    shown = str(result.exception) + result.output
    assert "duragent.yaml:4" in shown
    assert "services.session.url" in shown
    assert "s3cret" not in shown


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://duragent:s3cret@db:99999/app", "the port of the host is not a number from 1 to 65535"),
        ("postgresql://duragent:s3cret@db:five/app", "the port of the host is not a number from 1 to 65535"),
        (
            "postgresql://duragent:s3cret@db1:5432,db2:0/app",
            "the port of host 2 of 2 is not a number from 1 to 65535",
        ),
        ("postgresql://duragent:s3cret@[::1/app", "not a valid URL: Invalid IPv6 URL"),
    ],
)
def test_a_url_with_a_broken_host_or_port_names_the_service_and_its_line(url: str, problem: str) -> None:
    config = parse_config_text(f"services:\n  session:\n    backend: postgres\n    url: '{url}'\n", env={})
    with pytest.raises(ConfigError, match=rf"services\.session\.url: {re.escape(problem)}") as raised:
        open_session_store(config)
    location = raised.value.problems[0].location
    assert location is not None
    assert location.line == 4
    assert "s3cret" not in str(raised.value)


def test_db_status_on_a_url_listing_several_hosts_with_ports_reports_the_database(tmp_path: Path) -> None:
    # libpq's and asyncpg's multi-host form: the first host that answers is used.
    server = urlsplit(postgres_test_url())
    host = f"{server.hostname}:{server.port or 5432}"
    netloc = f"{server.username}@{host},{host}" if server.username else f"{host},{host}"
    url = urlunsplit(server._replace(netloc=netloc))
    config = tmp_path / "duragent.yaml"
    config.write_text(f"services:\n  session:\n    backend: postgres\n    url: '{url}'\n")

    result = CliRunner().invoke(build_app(), ["--config", str(config), "db", "status"])

    assert result.exit_code == 0, result.output
    assert f"session: postgresql://{netloc}{server.path} (schema duragent)" in result.output


@pytest.mark.parametrize(
    "password",
    # (base64 ends in "=" and holds "/": a "=" before the "@" is no query then)
    ["s3c#ret", "s3c/ret", "s3c?ret", "123#secret", "s3cQm9v/ZmFr=", "s3c=ss#word", "s3cret?x=1"],
)
def test_a_password_with_a_character_the_url_must_encode_is_refused_without_showing_it(password: str) -> None:
    """`#`, `/` and `?` end the host part of a URL: the password's start read as a host and port,
    and the message quoted it."""
    url = f"postgresql://duragent:{password}@db:5432/app"
    config = parse_config_text(f"services:\n  session:\n    backend: postgres\n    url: '{url}'\n", env={})
    with pytest.raises(ConfigError, match=r"services\.session\.url: .*percent-encode") as raised:
        open_session_store(config)
    assert raised.value.problems[0].location is not None
    assert "s3c" not in str(raised.value)
    assert "123" not in str(raised.value)


def test_a_schema_given_twice_in_the_url_is_refused_not_the_last_one_used() -> None:
    config = parse_config_text(
        "services:\n  session:\n    backend: postgres\n    url: postgresql://db/app?schema=a&schema=b\n",
        env={},
    )
    with pytest.raises(ConfigError, match=r"services\.session\.url: .*'schema' is given 2 times") as raised:
        open_session_store(config)
    location = raised.value.problems[0].location
    assert location is not None
    assert location.line == 4
