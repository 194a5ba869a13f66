"""A `services.*.url` that is no PostgreSQL URL is refused at its line of duragent.yaml, password unsaid."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from duragent.cli import build_app
from duragent.config import parse_config_text
from duragent.errors import ConfigError
from duragent.stores.factory import open_memory_store, open_session_store


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
