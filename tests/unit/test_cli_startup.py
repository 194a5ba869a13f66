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
