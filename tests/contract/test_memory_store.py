"""MemoryStore contract: the behaviour every backend (files now, PostgreSQL later) must show.

Add a backend by adding a factory to MEMORY_BACKENDS; every test here then runs against it.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date
from pathlib import Path

import pytest

from duragent.errors import InvalidName
from duragent.stores.base import MemoryConflict, MemoryEntry, MemoryQuery, MemoryStore
from duragent.stores.filesystem.memory import FilesystemMemoryStore

MemoryStoreFactory = Callable[[Path], AbstractAsyncContextManager[MemoryStore]]


@asynccontextmanager
async def make_fs_memory_store(tmp_path: Path) -> AsyncIterator[MemoryStore]:
    yield FilesystemMemoryStore(tmp_path / "memory")


@asynccontextmanager
async def make_pg_memory_store(tmp_path: Path) -> AsyncIterator[MemoryStore]:
    """PostgreSQL in a throwaway schema (skipped when the test server is unreachable, unless CI)."""
    from duragent.stores.postgres.memory import PostgresMemoryStore
    from duragent.testing.postgres import temporary_schema

    async with temporary_schema() as url:
        store = PostgresMemoryStore(url)
        try:
            yield store
        finally:
            await store.close()


MEMORY_BACKENDS: dict[str, MemoryStoreFactory] = {"fs": make_fs_memory_store, "pg": make_pg_memory_store}


@pytest.fixture(params=sorted(MEMORY_BACKENDS))
async def memory_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    async with MEMORY_BACKENDS[request.param](tmp_path) as store:
        yield store
        await store.close()


D1, D2, D3 = date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 26)


def texts(entries: list[MemoryEntry]) -> list[str]:
    return [entry.text for entry in entries]


async def test_an_entry_put_is_found_by_a_query_for_one_of_its_words(memory_store: MemoryStore) -> None:
    await memory_store.put("assistant", MemoryEntry("User's blog is example.com", "fact", D1))
    found = await memory_store.query("assistant", MemoryQuery(text="BLOG"))
    assert [(entry.text, entry.section, entry.day) for entry in found] == [
        ("User's blog is example.com", "fact", D1)
    ]


async def test_entries_are_kept_per_agent(memory_store: MemoryStore) -> None:
    await memory_store.put("assistant", MemoryEntry("likes tea", "preference", D1))
    await memory_store.put("helper", MemoryEntry("likes coffee", "preference", D1))
    assert texts(await memory_store.query("assistant", MemoryQuery(text="likes"))) == ["likes tea"]
    assert texts(await memory_store.query("nobody", MemoryQuery(text="likes"))) == []


async def test_a_query_without_words_lists_entries_newest_first(memory_store: MemoryStore) -> None:
    await memory_store.put("assistant", MemoryEntry("oldest", "fact", D1))
    await memory_store.put("assistant", MemoryEntry("middle", "decision", D2))
    await memory_store.put("assistant", MemoryEntry("newest", "decision", D2))
    assert texts(await memory_store.query("assistant", MemoryQuery())) == ["newest", "middle", "oldest"]


async def test_entries_matching_no_word_are_not_results(memory_store: MemoryStore) -> None:
    await memory_store.put("assistant", MemoryEntry("User prefers bullet points", "preference", D1))
    assert await memory_store.query("assistant", MemoryQuery(text="telegram")) == []


async def test_a_query_word_finds_longer_words_it_begins(memory_store: MemoryStore) -> None:
    await memory_store.put("assistant", MemoryEntry("User prefers bullet points", "preference", D1))
    assert texts(await memory_store.query("assistant", MemoryQuery(text="prefer"))) == [
        "User prefers bullet points"
    ]


async def test_section_filter_keeps_only_that_section(memory_store: MemoryStore) -> None:
    await memory_store.put("assistant", MemoryEntry("chose telegram", "decision", D1))
    await memory_store.put("assistant", MemoryEntry("telegram handle is @me", "fact", D1))
    found = await memory_store.query("assistant", MemoryQuery(text="telegram", section="decision"))
    assert [(entry.text, entry.section) for entry in found] == [("chose telegram", "decision")]
    by_heading = await memory_store.query("assistant", MemoryQuery(section="Facts Stored"))
    assert texts(by_heading) == ["telegram handle is @me"]


async def test_since_and_until_bound_the_days_inclusively(memory_store: MemoryStore) -> None:
    for day in (D1, D2, D3):
        await memory_store.put("assistant", MemoryEntry(f"note of {day.isoformat()}", "fact", day))
    found = await memory_store.query("assistant", MemoryQuery(text="note", since=D2, until=D2))
    assert texts(found) == ["note of 2026-11-25"]
    assert texts(await memory_store.query("assistant", MemoryQuery(since=D2))) == [
        "note of 2026-11-26",
        "note of 2026-11-25",
    ]
    assert texts(await memory_store.query("assistant", MemoryQuery(until=D1))) == ["note of 2026-11-24"]


async def test_ranking_puts_exact_phrase_first_then_more_words_then_recent_days(
    memory_store: MemoryStore,
) -> None:
    await memory_store.put("assistant", MemoryEntry("bullet points, says the user", "fact", D1))
    await memory_store.put("assistant", MemoryEntry("user loves bullet points", "fact", D1))
    await memory_store.put("assistant", MemoryEntry("the user is on holiday", "fact", D3))
    await memory_store.put("assistant", MemoryEntry("a user note", "fact", D2))
    found = await memory_store.query("assistant", MemoryQuery(text="User loves bullet"))
    assert texts(found) == [
        "user loves bullet points",  # exact phrase
        "bullet points, says the user",  # two of the words
        "the user is on holiday",  # one word, newest day
        "a user note",  # one word, older day
    ]


async def test_a_whole_word_ranks_above_a_word_it_only_begins(memory_store: MemoryStore) -> None:
    await memory_store.put("assistant", MemoryEntry("started blogging", "fact", D3))
    await memory_store.put("assistant", MemoryEntry("the blog moved", "fact", D1))
    assert texts(await memory_store.query("assistant", MemoryQuery(text="blog"))) == [
        "the blog moved",
        "started blogging",
    ]


async def test_limit_caps_the_results_keeping_the_best(memory_store: MemoryStore) -> None:
    for index in range(5):
        await memory_store.put("assistant", MemoryEntry(f"fact number {index}", "fact", D1))
    found = await memory_store.query("assistant", MemoryQuery(text="fact", limit=2))
    assert texts(found) == ["fact number 4", "fact number 3"]


async def test_multi_line_entries_come_back_as_written(memory_store: MemoryStore) -> None:
    await memory_store.put("assistant", MemoryEntry("Address:\n1 Main Street", "fact", D1))
    assert texts(await memory_store.query("assistant", MemoryQuery(text="street"))) == [
        "Address:\n1 Main Street"
    ]


async def test_a_day_reads_back_as_markdown_and_days_are_listed_newest_first(
    memory_store: MemoryStore,
) -> None:
    await memory_store.put("assistant", MemoryEntry("first", "fact", D1))
    await memory_store.put("assistant", MemoryEntry("third", "decision", D3))
    assert await memory_store.days("assistant") == [D3, D1]
    assert await memory_store.read_day("assistant", D1) == "# 2026-11-24\n\n## Facts Stored\n- first\n"
    assert await memory_store.read_day("assistant", D2) is None
    assert await memory_store.days("nobody") == []


async def test_long_term_memory_is_replaced_and_read_back(memory_store: MemoryStore) -> None:
    assert await memory_store.read_long_term("assistant") == ""
    await memory_store.write_long_term("assistant", "# Long-term\n\n- The user is Ada\n")
    await memory_store.write_long_term("assistant", "# Long-term\n\n- The user is Ada Lovelace\n")
    assert await memory_store.read_long_term("assistant") == "# Long-term\n\n- The user is Ada Lovelace\n"


async def test_world_memory_is_shared_by_topic(memory_store: MemoryStore) -> None:
    assert await memory_store.read_world() == {}
    await memory_store.write_world("team", "# Team\n\n- Ada leads\n")
    await memory_store.write_world("office", "# Office\n")
    await memory_store.write_world("team", "# Team\n\n- Grace leads\n")
    assert await memory_store.read_world() == {"office": "# Office\n", "team": "# Team\n\n- Grace leads\n"}


async def read_archive(chunks: AsyncIterator[bytes]) -> dict[str, str]:
    data = b"".join([chunk async for chunk in chunks])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {
            member.name: archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            for member in archive.getmembers()
            if member.isfile()
        }


async def test_export_of_an_agent_holds_its_markdown_and_the_world_but_no_other_agent(
    memory_store: MemoryStore,
) -> None:
    await memory_store.put("assistant", MemoryEntry("a fact", "fact", D1))
    await memory_store.write_long_term("assistant", "long term\n")
    await memory_store.write_world("team", "team notes\n")
    await memory_store.put("helper", MemoryEntry("not exported", "fact", D1))
    files = await read_archive(memory_store.export("assistant"))
    assert files == {
        "memory/assistant/2026-11-24.md": "# 2026-11-24\n\n## Facts Stored\n- a fact\n",
        "memory/assistant/MEMORY.md": "long term\n",
        "memory/world/team.md": "team notes\n",
    }


async def test_export_of_everything_holds_every_agent(memory_store: MemoryStore) -> None:
    await memory_store.put("assistant", MemoryEntry("one", "fact", D1))
    await memory_store.put("helper", MemoryEntry("two", "decision", D2))
    files = await read_archive(memory_store.export())
    assert sorted(files) == ["memory/assistant/2026-11-24.md", "memory/helper/2026-11-25.md"]


async def test_export_of_an_empty_memory_is_a_valid_empty_archive(memory_store: MemoryStore) -> None:
    assert await read_archive(memory_store.export("assistant")) == {}


@pytest.mark.parametrize("agent", ["../escape", "a/b", "", "world", "has space", "x" * 65])
async def test_unsafe_agent_names_are_refused(memory_store: MemoryStore, agent: str) -> None:
    with pytest.raises(InvalidName):
        await memory_store.put(agent, MemoryEntry("x", "fact", D1))
    with pytest.raises(InvalidName):
        await memory_store.query(agent, MemoryQuery())


async def test_unsafe_world_topics_are_refused(memory_store: MemoryStore) -> None:
    with pytest.raises(InvalidName):
        await memory_store.write_world("../agents/evil", "x")


async def test_a_persons_edit_replaces_the_text_it_was_made_from(memory_store: MemoryStore) -> None:
    await memory_store.put("scout", MemoryEntry("the sky is blue", "fact", D1))
    before = await memory_store.read_day("scout", D1)
    assert before is not None
    edited = before.replace("blue", "grey")

    await memory_store.replace_text("scout", D1, before, edited)
    await memory_store.replace_text("scout", None, None, "# Long-term\n\n- prefers tea\n")

    assert await memory_store.read_day("scout", D1) == edited
    assert texts(await memory_store.query("scout", MemoryQuery(text="grey"))) == ["the sky is grey"]
    assert await memory_store.read_long_term("scout") == "# Long-term\n\n- prefers tea\n"


async def test_an_edit_of_text_that_changed_meanwhile_is_refused_and_writes_nothing(
    memory_store: MemoryStore,
) -> None:
    await memory_store.put("scout", MemoryEntry("first", "fact", D1))
    before = await memory_store.read_day("scout", D1)
    await memory_store.put("scout", MemoryEntry("second, written by the agent meanwhile", "fact", D1))
    after_agent = await memory_store.read_day("scout", D1)

    with pytest.raises(MemoryConflict, match="changed while it was being edited"):
        await memory_store.replace_text("scout", D1, before, "# the person's version\n")
    with pytest.raises(MemoryConflict):
        await memory_store.replace_text("scout", D2, "text of a day that does not exist", "x\n")
    await memory_store.write_long_term("scout", "agent's MEMORY.md\n")
    with pytest.raises(MemoryConflict):
        await memory_store.replace_text("scout", None, None, "person's MEMORY.md\n")

    assert await memory_store.read_day("scout", D1) == after_agent
    assert await memory_store.read_day("scout", D2) is None
    assert await memory_store.read_long_term("scout") == "agent's MEMORY.md\n"


async def test_a_nul_character_a_model_wrote_is_left_out_alike_on_every_backend(
    memory_store: MemoryStore,
) -> None:
    """PostgreSQL cannot keep U+0000 in text (the memory tool failed there); files kept it."""
    await memory_store.put("assistant", MemoryEntry("likes tea\x00 and cake", "fact", D1))
    await memory_store.write_long_term("assistant", "# Memory\n\x00- prefers mornings\n")
    await memory_store.write_world("tea", "green\x00 tea\n")

    assert texts(await memory_store.query("assistant", MemoryQuery(text="tea"))) == ["likes tea and cake"]
    assert await memory_store.read_long_term("assistant") == "# Memory\n- prefers mornings\n"
    assert (await memory_store.read_world())["tea"] == "green tea\n"
