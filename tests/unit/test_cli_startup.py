"""`duragent --help` and `--version` stay fast: they import typer and little else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("aiohttp", "git", "pydantic", "yaml", "rich", "asyncpg", "aiobotocore", "aiogram", "watchdog")

PROBE = """
import atexit, sys
def report():
    loaded = sorted(m for m in sys.modules if '.' not in m)  # (a package is loaded before its modules)
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
    assert loaded_modules("-h", "--verbose") & set(HEAVY) == set()


@pytest.mark.parametrize("group", ["session", "serve", "memory", "chat"])
def test_command_help_imports_none_of_the_servers_or_stores_libraries(group: str) -> None:
    # typer itself builds a pydantic adapter for a group's options; everything else stays out.
    assert loaded_modules(group, "--help") & (set(HEAVY) - {"pydantic"}) == set()


def test_version_does_not_even_import_typer() -> None:
    loaded = loaded_modules("--version")
    assert "typer" not in loaded
    assert not loaded & set(HEAVY)


def typer_help(columns: int) -> str:
    """`duragent --help` as typer itself renders it on a terminal `columns` wide."""
    script = "from duragent.cli import build_app; build_app()(['--help'], prog_name='duragent')"
    env = {**os.environ, "COLUMNS": str(columns)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def fast_help(columns: int) -> str:
    """What `duragent --help` prints on a terminal `columns` wide."""
    env = {**os.environ, "COLUMNS": str(columns)}
    command = Path(sys.executable).with_name("duragent")  # the console script, as people run it
    done = subprocess.run([str(command), "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("columns", [80, 200])
def test_root_help_is_what_typer_prints_without_importing_typer(columns: int) -> None:
    assert fast_help(columns) == typer_help(columns)
    assert "typer" not in loaded_modules("--help")


def test_root_help_says_the_configuration_is_looked_for_upwards_like_git() -> None:
    """Every command finds the nearest duragent.yaml from a subfolder: not `./duragent.yaml` only."""
    shown = " ".join(fast_help(80).split())
    assert "Configuration file (default: the nearest duragent.yaml, here or in a parent folder)." in shown
    assert "./duragent.yaml" not in shown


def test_a_narrow_terminal_gets_typers_own_wrapping() -> None:
    narrow = fast_help(60)
    assert narrow == typer_help(60)
    assert max(len(line) for line in narrow.splitlines()) <= 60


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


FULL_NAMES_PROBE = PROBE.replace("m for m in sys.modules if '.' not in m", "sys.modules")


def modules_of_command(*args: str, plugins: str | None) -> set[str]:
    """Every module a command loaded, with `PYDANTIC_DISABLE_PLUGINS` as given (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    if plugins is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = plugins
    done = subprocess.run(
        [sys.executable, "-c", FULL_NAMES_PROBE, *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout  # typer built its pydantic adapter and answered
    return set(done.stderr.split())


def test_pydantic_plugin_lookup_is_skipped_without_importing_package_metadata() -> None:
    # pydantic's plugin loader imports importlib.metadata even when plugins are off (0.8 MiB, 9 ms)
    loaded = modules_of_command("serve", "--help", plugins=None)
    assert "pydantic" in loaded
    assert "importlib.metadata" not in loaded


def test_a_person_who_turns_pydantic_plugins_on_gets_pydantics_own_loader() -> None:
    loaded = modules_of_command("serve", "--help", plugins="")
    assert "importlib.metadata" in loaded
