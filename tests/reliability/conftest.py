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
