"""`${VAR}`, `${VAR:-default}` and `$$` in configuration strings."""

from __future__ import annotations

import pytest

from duragent.interpolation import InterpolationError, expand, referenced_names


def test_variable_is_replaced_by_its_value() -> None:
    assert expand("Bearer ${TOKEN}", {"TOKEN": "abc"}) == "Bearer abc"


def test_default_is_used_only_when_the_variable_is_unset() -> None:
    assert expand("${PORT:-8080}", {}) == "8080"
    assert expand("${PORT:-8080}", {"PORT": "9000"}) == "9000"
    assert expand("${EMPTY:-}", {}) == ""


def test_double_dollar_is_a_literal_dollar() -> None:
    assert expand("price $$5 and $${NOT_A_VAR}", {}) == "price $5 and ${NOT_A_VAR}"


def test_a_lone_dollar_stays_as_written() -> None:
    assert expand("costs $5", {}) == "costs $5"


def test_missing_variable_without_default_names_the_variable() -> None:
    with pytest.raises(InterpolationError, match="'DATABASE_URL' is not set") as info:
        expand("url: ${DATABASE_URL}", {})
    assert info.value.column == 5


def test_unclosed_reference_is_an_error() -> None:
    with pytest.raises(InterpolationError, match="unclosed"):
        expand("${OOPS", {})


def test_malformed_reference_is_an_error() -> None:
    with pytest.raises(InterpolationError, match="not a variable reference"):
        expand("${1BAD}", {})


def test_used_names_are_collected_for_the_secret_guard() -> None:
    used: set[str] = set()
    expand("${A} ${B:-x} $${C}", {"A": "1"}, used)
    assert used == {"A", "B"}
    assert referenced_names("${A} ${B:-x} $${C}") == {"A", "B"}
