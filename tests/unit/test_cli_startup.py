"""`duragent --help` and `--version` stay fast: they import typer and little else."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("aiohttp", "git", "pydantic", "yaml", "rich", "asyncpg", "aiobotocore", "aiogram", "watchdog")

PROBE = """
import atexit, sys
def report():
    loaded = sorted({m.split('.')[0] for m in sys.modules})
    print(' '.join(loaded), file=sys.stderr)
atexit.register(report)
sys.argv = ['duragent', *sys.argv[1:]]
from duragent.cli import main
main()
"""


def loaded_modules(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stderr.split())


def test_help_imports_no_heavy_library() -> None:
    assert loaded_modules("--help") & set(HEAVY) == set()


@pytest.mark.parametrize("group", ["session", "serve", "memory", "chat"])
def test_command_help_imports_none_of_the_servers_or_stores_libraries(group: str) -> None:
    # typer itself builds a pydantic adapter for a group's options; everything else stays out.
    assert loaded_modules(group, "--help") & (set(HEAVY) - {"pydantic"}) == set()


def test_version_does_not_even_import_typer() -> None:
    loaded = loaded_modules("--version")
    assert "typer" not in loaded
    assert not loaded & set(HEAVY)


def test_the_command_table_lists_exactly_what_the_modules_register() -> None:
    from duragent.cli import COMMAND_MODULES, COMMANDS
    from duragent.cli.app import module_commands

    registered = {name: module for module in COMMAND_MODULES for name in module_commands(module)}
    assert registered == {name: module for name, (module, _) in COMMANDS.items()}


def test_every_command_answers_help() -> None:
    from typer.testing import CliRunner

    from duragent.cli import COMMANDS, build_app

    for name in COMMANDS:
        result = CliRunner().invoke(build_app(), [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage: duragent " + name in " ".join(result.output.split())
