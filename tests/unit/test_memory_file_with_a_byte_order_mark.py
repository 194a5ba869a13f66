"""A daily file saved by a Windows editor as "UTF-8 with BOM" (U+FEFF before its first line)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from duragent.stores.base import MemoryEntry, MemoryQuery
from duragent.stores.filesystem.memory import FilesystemMemoryStore

DAY = date(2026, 12, 2)
SAVED_BY_NOTEPAD = "\ufeff## Facts Stored\r\n- Office is in Lisbon\r\n".encode()


async def test_entries_under_a_first_heading_after_a_bom_are_found(tmp_path: Path) -> None:
    store = FilesystemMemoryStore(tmp_path)
    (tmp_path / "assistant").mkdir()
    (tmp_path / "assistant" / "2026-12-02.md").write_bytes(SAVED_BY_NOTEPAD)

    found = await store.query("assistant", MemoryQuery(text="lisbon"))

    assert [entry.text for entry in found] == ["Office is in Lisbon"]  # (was: nothing)


async def test_remembering_joins_that_section_instead_of_adding_a_second_one(tmp_path: Path) -> None:
    store = FilesystemMemoryStore(tmp_path)
    path = tmp_path / "assistant" / "2026-12-02.md"
    path.parent.mkdir()
    path.write_bytes(SAVED_BY_NOTEPAD)

    await store.put("assistant", MemoryEntry("Team meets on Mondays", "fact", DAY))

    # the mark and the line endings stay as the editor saved them
    assert path.read_bytes() == SAVED_BY_NOTEPAD + b"- Team meets on Mondays\r\n"
