"""The reliability suite: faults injected into real processes, and what must hold afterwards."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def fault_count(request: pytest.FixtureRequest) -> Callable[[int], int]:
    """`count(ci_default)`: the number of faults to inject, `--count N` when given."""

    def count(ci_default: int) -> int:
        given: int | None = request.config.getoption("--count")
        return given if given is not None else ci_default

    return count


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak tests run only when asked for (`-m soak`): they take minutes, CI runs the rest."""
    if "soak" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="soak test: run it with -m soak (and --count N turns)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
