"""A cron expression or a timing with a mistake is refused with the field to fix: the cron field
(`hour '25' is not valid (0-23)`), the command-line flag, or the YAML file's line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from duragent.cli import build_app
from duragent.errors import ConfigError, UsageError
from duragent.scaffold import init_workspace
from duragent.scheduling.spec import check_cron
from duragent.scheduling.store import read_schedule_file


@pytest.mark.parametrize(
    ("expression", "said"),
    [
        ("0 25 * * *", "hour '25' is not valid (0-23)"),
        ("61 * * * *", "minute '61' is not valid (0-59)"),
        ("0 9 32 * *", "day of month '32' is not valid (1-31)"),
        ("0 9 * 13 *", "month '13' is not valid (1-12 or JAN-DEC)"),
        ("0 9 * * FRY", "day of week 'FRY' is not valid (0-7 or SUN-SAT)"),
        ("70 0 9 * * *", "second '70' is not valid (0-59)"),
        ("*/0 * * * *", "minute '*/0' is not valid (0-59)"),
    ],
)
def test_a_wrong_cron_field_is_named(expression: str, said: str) -> None:
    with pytest.raises(ValueError, match="invalid cron expression") as refused:
        check_cron(expression)
    assert str(refused.value) == f"invalid cron expression {expression!r}: {said}"


def test_a_wrong_cron_field_in_a_file_is_reported_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "sch_typo.yaml"
    path.write_text(
        "id: sch_typo\nagent: assistant\ncreated_at: '2026-12-06T06:46:57Z'\n"
        "cron: 0 25 * * *\nmessage: backup\n"
    )
    with pytest.raises(ConfigError) as refused:
        read_schedule_file(path)
    assert "sch_typo.yaml:4" in str(refused.value)
    assert "hour '25' is not valid (0-23)" in str(refused.value)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--cron", "0 25 * * *"], "--cron: invalid cron expression '0 25 * * *': hour '25' is not valid"),
        (["--at", "2030-01-01T09:00:00"], "--at: give a time zone offset"),
        (["--every", "1h", "--timezone", "Europe/Paris"], "--timezone: applies to cron only"),
    ],
)
def test_the_command_line_names_the_flag_to_fix(
    args: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")

    result = CliRunner().invoke(
        build_app(), ["schedule", "add", "--agent", "assistant", *args, "--message", "x"]
    )

    assert isinstance(result.exception, UsageError), result.output
    assert str(result.exception).startswith(said), str(result.exception)
    assert not list((tmp_path / "ws" / ".duragent" / "schedules").glob("sch_*.yaml"))
