"""How memory fits its share of the context: old days go first, today's notes stay."""

from __future__ import annotations

from duragent.runtime.context import estimate_tokens
from duragent.runtime.memory_context import fit_memory

LONG_TERM = "# Long-term memory (MEMORY.md)\n\n" + "- an old fact worth keeping\n" * 400
TODAY = "# Memory of 2026-12-06\n\n- The user moved the meeting to Friday"
YESTERDAY = "# Memory of 2026-12-05\n\n- The user likes tea"


def test_the_oldest_days_are_dropped_first_when_memory_md_fits() -> None:
    fixed = ["# Long-term memory (MEMORY.md)\n\n- likes tea"]
    budget = estimate_tokens("\n\n".join([*fixed, TODAY])) + 2

    text = fit_memory(fixed, [TODAY, YESTERDAY], budget)

    assert text == "\n\n".join([*fixed, TODAY])


def test_a_memory_md_too_long_for_the_budget_is_cut_and_todays_notes_stay() -> None:
    text = fit_memory([LONG_TERM], [TODAY, YESTERDAY], 500)

    assert estimate_tokens(text) <= 500
    assert text.endswith(TODAY)
    assert "characters cut" in text
    assert text.startswith("# Long-term memory (MEMORY.md)")
    assert "The user likes tea" not in text


def test_todays_notes_alone_over_the_budget_are_cut_not_dropped() -> None:
    long_day = "# Memory of 2026-12-06\n\n" + "- something said today\n" * 400

    alone = fit_memory([], [long_day], 300)
    beside = fit_memory([LONG_TERM], [long_day], 300)

    assert alone.startswith("# Memory of 2026-12-06")
    assert estimate_tokens(alone) <= 300
    assert beside.startswith("# Long-term memory")
    assert "# Memory of 2026-12-06" in beside
    assert estimate_tokens(beside) <= 300
