"""The daily memory file: parsing it and adding a bullet while leaving every other byte alone."""

from __future__ import annotations

import random
from datetime import date

import pytest

from duragent.errors import InvalidName
from duragent.memory.markdown import (
    EmptyMemoryEntry,
    add_bullet,
    parse_daily,
    section_key,
    section_plural,
)

DAY = date(2025, 12, 15)

SEED_EXAMPLE = """# 2025-12-15

## Decisions Made
- Chose Telegram as primary interface

## Preferences Learned
- User prefers bullet points

## Facts Stored
- User's blog: example.com
"""


def entries_of(text: str) -> list[tuple[str, str]]:
    return [(entry.section, entry.text) for entry in parse_daily(text, DAY)]


def test_the_seed_example_parses_into_one_entry_per_section() -> None:
    assert entries_of(SEED_EXAMPLE) == [
        ("decision", "Chose Telegram as primary interface"),
        ("preference", "User prefers bullet points"),
        ("fact", "User's blog: example.com"),
    ]
    assert all(entry.day == DAY for entry in parse_daily(SEED_EXAMPLE, DAY))


def test_a_new_file_gets_the_title_and_only_the_section_written() -> None:
    assert add_bullet(None, DAY, "fact", "User's blog: example.com") == (
        "# 2025-12-15\n\n## Facts Stored\n- User's blog: example.com\n"
    )
    assert add_bullet("", DAY, "decision", "x") == "# 2025-12-15\n\n## Decisions Made\n- x\n"


def test_writing_all_three_sections_reproduces_the_seed_format() -> None:
    text = add_bullet(None, DAY, "fact", "User's blog: example.com")
    text = add_bullet(text, DAY, "decision", "Chose Telegram as primary interface")
    text = add_bullet(text, DAY, "preference", "User prefers bullet points")
    assert text == SEED_EXAMPLE


def test_a_missing_section_is_inserted_in_canonical_order() -> None:
    text = "# 2025-12-15\n\n## Decisions Made\n- a\n\n## Facts Stored\n- c\n"
    assert add_bullet(text, DAY, "preference", "b") == (
        "# 2025-12-15\n\n## Decisions Made\n- a\n\n## Preferences Learned\n- b\n\n## Facts Stored\n- c\n"
    )


def test_a_missing_first_section_goes_before_the_others() -> None:
    text = "# 2025-12-15\n\n## Facts Stored\n- c\n"
    assert add_bullet(text, DAY, "decision", "a") == (
        "# 2025-12-15\n\n## Decisions Made\n- a\n\n## Facts Stored\n- c\n"
    )


def test_a_missing_last_section_goes_after_the_last_canonical_one_not_after_a_persons_section() -> None:
    text = "# 2025-12-15\n\n## Decisions Made\n- a\n\n## Things To Try\n- t\n"
    assert add_bullet(text, DAY, "fact", "c") == (
        "# 2025-12-15\n\n## Decisions Made\n- a\n\n## Facts Stored\n- c\n\n## Things To Try\n- t\n"
    )


def test_the_bullet_lands_after_the_sections_last_line_before_its_blank_lines() -> None:
    text = "# 2025-12-15\n\n## Facts Stored\n- one\n- two\n\n\n## Notes\nfree text\n"
    assert add_bullet(text, DAY, "fact", "three") == (
        "# 2025-12-15\n\n## Facts Stored\n- one\n- two\n- three\n\n\n## Notes\nfree text\n"
    )


def test_every_other_byte_of_a_human_edited_file_is_kept() -> None:
    text = (
        "# 2025-12-15   \n"
        "Some words a person wrote under the title.\n"
        "\n"
        "##   facts stored  \n"
        "* starred bullet\n"
        "  with a continuation\n"
        "\n"
        "\n"
        "## My Own Section\n"
        "- keep me\t\n"
        "### a sub heading\n"
        "trailing words"
    )
    result = add_bullet(text, DAY, "fact", "new fact")
    assert result == text.replace("  with a continuation\n", "  with a continuation\n- new fact\n")


def test_a_file_without_a_final_newline_keeps_that_quirk() -> None:
    assert add_bullet("# 2025-12-15\n\n## Facts Stored\n- a", DAY, "fact", "b") == (
        "# 2025-12-15\n\n## Facts Stored\n- a\n- b"
    )
    assert add_bullet("# 2025-12-15", DAY, "fact", "b") == "# 2025-12-15\n\n## Facts Stored\n- b"


def test_windows_line_endings_are_kept_and_used_for_new_lines() -> None:
    text = "# 2025-12-15\r\n\r\n## Facts Stored\r\n- a\r\n"
    assert add_bullet(text, DAY, "preference", "p") == (
        "# 2025-12-15\r\n\r\n## Preferences Learned\r\n- p\r\n\r\n## Facts Stored\r\n- a\r\n"
    )
    assert entries_of(text) == [("fact", "a")]


def test_multi_line_entry_text_becomes_one_bullet_with_indented_continuations() -> None:
    text = add_bullet(None, DAY, "fact", "  first line\n\n   second line  \nthird\n")
    assert text == "# 2025-12-15\n\n## Facts Stored\n- first line\n  second line\n  third\n"
    assert entries_of(text) == [("fact", "first line\nsecond line\nthird")]


def test_a_persons_section_is_named_by_its_heading_and_can_be_written_to() -> None:
    text = "# 2025-12-15\n\n## Travel Plans\n- Lisbon in May\n"
    assert entries_of(text) == [("Travel Plans", "Lisbon in May")]
    updated = add_bullet(text, DAY, "Travel Plans", "Porto in June")
    assert updated == text + "- Porto in June\n"
    assert add_bullet(text, DAY, "Reading List", "Dune").endswith(
        "- Lisbon in May\n\n## Reading List\n- Dune\n"
    )


def test_bullets_outside_any_section_and_other_text_are_not_entries() -> None:
    text = "# 2025-12-15\n- before any section\n\n## Facts Stored\nplain paragraph\n- real\n"
    assert entries_of(text) == [("fact", "real")]


def test_section_names_accept_keys_plurals_and_headings() -> None:
    assert section_key("fact") == section_key("Facts") == section_key("facts stored") == "fact"
    assert section_key("Decisions Made") == "decision"
    assert section_plural("preference") == "preferences"
    assert section_key(" Travel Plans ") == "Travel Plans"
    with pytest.raises(InvalidName):
        section_key("two\nlines")
    with pytest.raises(InvalidName):
        section_key("  ")


def test_blank_entry_text_is_refused() -> None:
    with pytest.raises(EmptyMemoryEntry):
        add_bullet(None, DAY, "fact", " \n\t\n")


_SECTIONS = ["decision", "preference", "fact", "Travel Plans", "Notes"]
_NOISE = ["", "   ", "some words", "* starred", "### deep", "1. numbered", "  - nested"]


def _random_file(rng: random.Random) -> str:
    lines = [f"# {DAY.isoformat()}"] if rng.random() < 0.8 else []
    for _ in range(rng.randint(0, 4)):
        heading = rng.choice(
            ["Decisions Made", "Preferences Learned", "Facts Stored", "Travel Plans", "Notes"]
        )
        lines += ["", f"## {heading}"]
        for _ in range(rng.randint(0, 3)):
            lines.append(f"- item {rng.randint(0, 999)}")
            if rng.random() < 0.3:
                lines.append(f"  more {rng.randint(0, 9)}")
        lines += [rng.choice(_NOISE) for _ in range(rng.randint(0, 2))]
    text = "\n".join(lines)
    return text + ("\n" if rng.random() < 0.7 else "")


def test_adding_a_bullet_keeps_every_old_entry_and_adds_the_new_one() -> None:
    rng = random.Random(20251215)
    for _ in range(500):
        text = _random_file(rng)
        section = rng.choice(_SECTIONS)
        new_text = f"new {rng.randint(0, 10**6)}" + ("\nsecond" if rng.random() < 0.3 else "")
        before = entries_of(text)
        after = entries_of(add_bullet(text, DAY, section, new_text))
        assert len(after) == len(before) + 1, text
        added = (section_key(section), new_text)
        assert added in after, text
        remaining = list(after)
        remaining.remove(added)
        assert remaining == before, text
