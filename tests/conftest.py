"""Fixtures shared by every test: an isolated environment and a scratch workspace directory."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Fakes every test may use (fake LLM, fake Telegram, S3, PostgreSQL schemas) and the server harness.
pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's API keys, config path or git identity quirks."""
    for name in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "OPENROUTER_API_KEY",
        "DURAGENT_CONFIG",
        "DURAGENT_API_TOKEN",
        "TELEGRAM_BOT_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = Test Person\n\temail = person@example.test\n")
    monkeypatch.setenv("HOME", str(home))


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--count N`: how many faults the reliability suite injects per case (longer local runs)."""
    parser.addoption(
        "--count",
        type=int,
        default=None,
        help="faults per reliability case (tests/reliability; default: the CI-sized count of each)",
    )
