"""The filesystem MemoryStore's own promises: file layout, byte-exact edits, locking, export streaming."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from datetime import date
from pathlib import Path

import pytest

from duragent.errors import InvalidName
from duragent.memory.markdown import parse_daily
from duragent.stores.base import Change, MemoryEntry, MemoryQuery, StorageUnavailable
from duragent.stores.filesystem.memory import EXPORT_CHUNK_SIZE, FilesystemMemoryStore

DAY = date(2026, 11, 26)


def daily_file(root: Path, agent: str = "assistant", day: date = DAY) -> Path:
    return root / agent / f"{day.isoformat()}.md"


async def test_entries_land_in_the_agents_daily_file_in_the_seed_format(tmp_path: Path) -> None:
    store = FilesystemMemoryStore(tmp_path)
    await store.put("assistant", MemoryEntry("User's blog: example.com", "fact", DAY))
    await store.put("assistant", MemoryEntry("Chose Telegram as primary interface", "decision", DAY))
    await store.put("assistant", MemoryEntry("User prefers bullet points", "preference", DAY))
    assert daily_file(tmp_path).read_text() == (
        "# 2026-11-26\n\n"
        "## Decisions Made\n- Chose Telegram as primary interface\n\n"
        "## Preferences Learned\n- User prefers bullet points\n\n"
        "## Facts Stored\n- User's blog: example.com\n"
    )


async def test_a_put_on_a_human_edited_file_changes_only_the_new_bullets_line(tmp_path: Path) -> None:
    store = FilesystemMemoryStore(tmp_path)
    human = (
        "# 2026-11-26\n"
        "<!-- I tidied this up by hand -->\n"
        "\n"
        "## Decisions Made\n"
        "- Chose Telegram   \n"
        "\n"
        "## Facts Stored\n"
        "* Blog: example.com\n"
        "    (moved from wordpress)\n"
        "\n"
        "\n"
        "## Gift Ideas\n"
        "- a kite"
    )
    path = daily_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(human)
    await store.put("assistant", MemoryEntry("Lives in Lisbon", "fact", DAY))
    assert path.read_text() == human.replace(
        "    (moved from wordpress)\n", "    (moved from wordpress)\n- Lives in Lisbon\n"
    )
    await store.put("assistant", MemoryEntry("Likes short answers", "preference", DAY))
    assert path.read_text() == human.replace(
        "    (moved from wordpress)\n", "    (moved from wordpress)\n- Lives in Lisbon\n"
    ).replace("## Facts Stored\n", "## Preferences Learned\n- Likes short answers\n\n## Facts Stored\n")


async def test_an_edit_made_between_two_puts_is_kept(tmp_path: Path) -> None:
    store = FilesystemMemoryStore(tmp_path)
    await store.put("assistant", MemoryEntry("first", "fact", DAY))
    path = daily_file(tmp_path)
    path.write_text(path.read_text().replace("- first", "- first (corrected by me)"))
    await store.put("assistant", MemoryEntry("second", "fact", DAY))
    assert path.read_text().endswith("- first (corrected by me)\n- second\n")


async def test_concurrent_puts_in_one_process_all_survive(tmp_path: Path) -> None:
    store = FilesystemMemoryStore(tmp_path)
    await asyncio.gather(
        *(store.put("assistant", MemoryEntry(f"fact {index}", "fact", DAY)) for index in range(40))
    )
    entries = parse_daily(daily_file(tmp_path).read_text(), DAY)
    assert sorted(entry.text for entry in entries) == sorted(f"fact {index}" for index in range(40))


WRITER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    from datetime import date
    from pathlib import Path
    from duragent.stores.base import MemoryEntry
    from duragent.stores.filesystem.memory import FilesystemMemoryStore

    root, name, start_flag = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

    async def main() -> None:
        store = FilesystemMemoryStore(root)
        for index in range(80):
            await store.put("assistant", MemoryEntry(f"{name} {index}", "fact", date(2026, 11, 26)))

    while not start_flag.exists():
        time.sleep(0.005)
    asyncio.run(main())
    """
)


def test_concurrent_puts_from_two_processes_both_survive(tmp_path: Path) -> None:
    start_flag = tmp_path / "go"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT, str(tmp_path / "memory"), name, str(start_flag)]
        )
        for name in ("alpha", "beta")
    ]
    start_flag.touch()
    for writer in writers:
        assert writer.wait(timeout=30) == 0
    entries = parse_daily(daily_file(tmp_path / "memory").read_text(), DAY)
    expected = [f"{name} {index}" for name in ("alpha", "beta") for index in range(80)]
    assert sorted(entry.text for entry in entries) == sorted(expected)


async def test_each_put_reports_the_changed_file_with_a_readable_summary(tmp_path: Path) -> None:
    changes: list[Change] = []
    store = FilesystemMemoryStore(tmp_path, on_change=changes.append)
    await store.put("assistant", MemoryEntry("x", "fact", DAY))
    await store.put("assistant", MemoryEntry("y", "Decisions Made", DAY))
    await store.write_long_term("assistant", "long\n")
    await store.write_world("team", "team\n")
    assert [(change.paths, change.kind, change.subject, change.summary) for change in changes] == [
        ((daily_file(tmp_path),), "memory", "assistant", "2026-11-26 facts +1"),
        ((daily_file(tmp_path),), "memory", "assistant", "2026-11-26 decisions +1"),
        ((tmp_path / "assistant" / "MEMORY.md",), "memory", "assistant", "MEMORY.md updated"),
        ((tmp_path / "world" / "team.md",), "memory", "world", "team updated"),
    ]


async def test_entry_text_is_redacted_before_it_reaches_the_disk(tmp_path: Path) -> None:
    store = FilesystemMemoryStore(tmp_path, redact=lambda text: text.replace("sk-secret", "[REDACTED:KEY]"))
    await store.put("assistant", MemoryEntry("the key is sk-secret", "fact", DAY))
    text = daily_file(tmp_path).read_text()
    assert "sk-secret" not in text
    assert "- the key is [REDACTED:KEY]\n" in text


async def test_files_a_person_drops_in_that_are_not_days_are_ignored_by_days_and_query(
    tmp_path: Path,
) -> None:
    store = FilesystemMemoryStore(tmp_path)
    await store.put("assistant", MemoryEntry("real", "fact", DAY))
    (tmp_path / "assistant" / "notes.md").write_text("## Facts Stored\n- not a day\n")
    (tmp_path / "assistant" / "2026-13-40.md").write_text("## Facts Stored\n- bad date\n")
    assert await store.days("assistant") == [DAY]
    assert [entry.text for entry in await store.query("assistant", MemoryQuery())] == ["real"]


async def test_export_skips_lock_and_temp_files(tmp_path: Path) -> None:
    store = FilesystemMemoryStore(tmp_path)
    await store.put("assistant", MemoryEntry("x", "fact", DAY))
    (tmp_path / "assistant" / ".2026-11-26.md.01ABC.tmp").write_text("half written")
    assert (tmp_path / ".locks").is_dir()
    data = b"".join([chunk async for chunk in store.export()])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        assert archive.getnames() == ["memory/assistant/2026-11-26.md"]
        member = archive.getmember("memory/assistant/2026-11-26.md")
        assert (member.uname, member.gname) == ("", "")


async def test_a_large_export_streams_in_bounded_chunks(tmp_path: Path) -> None:
    store = FilesystemMemoryStore(tmp_path)
    # Random hex compresses only about 2:1, so the archive is several chunks long.
    await store.write_world("big", os.urandom(300_000).hex())
    chunks = [chunk async for chunk in store.export()]
    assert len(chunks) >= 3
    assert max(len(chunk) for chunk in chunks) < 2 * EXPORT_CHUNK_SIZE


async def test_an_export_abandoned_midway_stops_its_writer_thread(tmp_path: Path) -> None:
    store = FilesystemMemoryStore(tmp_path)
    for index in range(8):
        await store.write_world(f"topic{index}", os.urandom(200_000).hex())
    threads_before = {thread.name for thread in threading.enumerate()}
    assert "memory-export" not in threads_before
    export = store.export()
    first = await export.__anext__()
    assert first
    await export.aclose()
    assert "memory-export" not in {thread.name for thread in threading.enumerate()}


@pytest.mark.parametrize("agent", ["world", "World"])
async def test_world_is_not_an_agent_name(tmp_path: Path, agent: str) -> None:
    store = FilesystemMemoryStore(tmp_path)
    with pytest.raises(InvalidName, match="shared by all agents"):
        await store.put(agent, MemoryEntry("x", "fact", DAY))


async def test_lines_a_person_appends_with_shell_redirection_while_the_agent_writes_all_survive(
    tmp_path: Path,
) -> None:
    # `echo ... >> file` takes no lock: the store must merge, never replace it with a stale copy
    store = FilesystemMemoryStore(tmp_path)
    await store.put("assistant", MemoryEntry("agent 0", "fact", DAY))
    path = daily_file(tmp_path)
    person = await asyncio.create_subprocess_exec(
        "bash", "-c", f'for i in $(seq 1 400); do echo "- person $i" >> "{path}"; done'
    )
    count = 1
    while person.returncode is None or count < 40:
        await store.put("assistant", MemoryEntry(f"agent {count}", "fact", DAY))
        count += 1
        if person.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(person.wait(), 0.001)
    assert await person.wait() == 0
    lines = path.read_text().splitlines()
    assert sorted(line for line in lines if line.startswith("- person ")) == sorted(
        f"- person {i}" for i in range(1, 401)
    )
    assert sum(line.startswith("- agent ") for line in lines) == count


async def test_replacing_memory_md_keeps_the_lines_a_person_added_since_the_agent_read_it(
    tmp_path: Path,
) -> None:
    store = FilesystemMemoryStore(tmp_path)
    await store.write_long_term("assistant", "# Memory\n\n- likes tea\n")
    assert await store.read_long_term("assistant") == "# Memory\n\n- likes tea\n"
    path = tmp_path / "assistant" / "MEMORY.md"
    path.write_text(path.read_text() + "- added by hand\n")
    await store.write_long_term("assistant", "# Memory\n\n- likes green tea\n")
    assert path.read_text() == "# Memory\n\n- likes green tea\n- added by hand\n"


async def test_a_memory_write_the_full_disk_refuses_keeps_the_file_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemMemoryStore(tmp_path)
    await store.write_long_term("assistant", "# Memory\n\n- likes tea\n")
    path = tmp_path / "assistant" / "MEMORY.md"
    real_fsync = os.fsync

    def fsync_on_a_full_disk(fd: int) -> None:
        # (the write went to the page cache; the disk says it is full when it is flushed)
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_on_a_full_disk)
    with pytest.raises(StorageUnavailable, match=f"cannot write {path}: No space left on device"):
        await store.write_long_term("assistant", "# Memory\n\n- likes green tea\n")

    assert path.read_text() == "# Memory\n\n- likes tea\n"
    assert [child.name for child in path.parent.iterdir()] == ["MEMORY.md"]  # no temp file left


async def test_a_persons_change_found_by_a_write_is_reported_as_their_edit_before_the_agents(
    tmp_path: Path,
) -> None:
    changes: list[Change] = []
    store = FilesystemMemoryStore(tmp_path, on_change=changes.append)
    await store.put("assistant", MemoryEntry("first", "fact", DAY))
    path = daily_file(tmp_path)
    path.write_text(path.read_text() + "- by hand\n")
    by_hand = path.read_bytes()
    await store.put("assistant", MemoryEntry("second", "fact", DAY))
    assert [(change.kind, change.content) for change in changes[1:]] == [
        ("edit", by_hand),
        ("memory", path.read_bytes()),
    ]
    assert changes[0].content is not None
    assert b"- by hand" not in changes[0].content


async def test_a_folder_named_like_a_day_is_no_day_and_breaks_no_search(tmp_path: Path) -> None:
    store = FilesystemMemoryStore(tmp_path)
    await store.put("assistant", MemoryEntry("Ships on Fridays", "decision", DAY))
    (tmp_path / "assistant" / "2020-01-01.md").mkdir()  # (a person's folder of notes, say)

    assert await store.days("assistant") == [DAY]
    [found] = await store.query("assistant", MemoryQuery(text="fridays"))
    assert found.text == "Ships on Fridays"


async def test_an_editor_that_truncates_then_writes_has_finished_its_save_when_the_agent_writes(
    tmp_path: Path,
) -> None:
    store = FilesystemMemoryStore(tmp_path)
    await store.put("assistant", MemoryEntry("Ships on Fridays", "decision", DAY))
    path = daily_file(tmp_path)
    saved = path.read_text() + "\n## Travel Plans\n- Lisbon in May\n"
    opened = threading.Event()

    def save_as_nano_does() -> None:
        with open(path, "w") as handle:  # the file is empty from here until the buffer is written
            opened.set()
            time.sleep(0.2)  # (the editor writing its buffer)
            handle.write(saved)

    person = threading.Thread(target=save_as_nano_does)
    person.start()
    await asyncio.to_thread(opened.wait)
    await store.put("assistant", MemoryEntry("Tea, not coffee", "preference", DAY))
    await asyncio.to_thread(person.join)

    assert path.read_text() == (
        "# 2026-11-26\n\n## Decisions Made\n- Ships on Fridays\n\n## Preferences Learned\n"
        "- Tea, not coffee\n\n## Travel Plans\n- Lisbon in May\n"
    )


LEASE_HOLDER = """
import fcntl, subprocess, sys, time
from pathlib import Path
from duragent.stores.filesystem.memory import FilesystemMemoryStore

root = Path(sys.argv[1])
FilesystemMemoryStore(root)  # as a server's start makes it
path = root / "MEMORY.md"
with open(path, "rb") as handle:
    # what _wait_for_writers does for a moment before each write
    fcntl.fcntl(handle.fileno(), fcntl.F_SETLEASE, fcntl.F_RDLCK)
    append = "import sys; open(sys.argv[1], 'a').write('- late\\\\n')"
    writer = subprocess.Popen([sys.executable, "-c", append, str(path)])
    deadline = time.monotonic() + 20
    while fcntl.fcntl(handle.fileno(), fcntl.F_GETLEASE) != fcntl.F_UNLCK and time.monotonic() < deadline:
        time.sleep(0.01)  # the writer's open is breaking the lease: the kernel sent SIGIO by now
    fcntl.fcntl(handle.fileno(), fcntl.F_SETLEASE, fcntl.F_UNLCK)
    sys.exit(writer.wait(20))
"""


def test_a_writer_opening_a_file_the_store_has_a_lease_on_does_not_end_the_process(tmp_path: Path) -> None:
    """The kernel breaks a read lease with SIGIO, whose default action ends the process: a person
    saving MEMORY.md at the moment a write checked for writers killed the whole server."""
    import subprocess
    import sys

    (tmp_path / "MEMORY.md").write_text("# Memory\n")
    done = subprocess.run(
        [sys.executable, "-c", LEASE_HOLDER, str(tmp_path)], capture_output=True, timeout=60
    )

    assert done.returncode == 0, (done.returncode, done.stderr.decode())
    assert (tmp_path / "MEMORY.md").read_text() == "# Memory\n- late\n"


def test_programs_the_server_starts_get_sigio_as_they_would_anywhere(tmp_path: Path) -> None:
    """What the store does about SIGIO stays in the server: a command or plugin it starts has the
    default disposition (an ignored signal would stay ignored across exec)."""
    import subprocess
    import sys

    script = (
        "import signal, subprocess, sys\n"
        "from duragent.stores.filesystem.memory import FilesystemMemoryStore\n"
        "FilesystemMemoryStore(__import__('pathlib').Path(sys.argv[1]))\n"
        "child = 'import signal; print(signal.getsignal(signal.SIGIO) == signal.SIG_DFL)'\n"
        "ran = subprocess.run([sys.executable, '-c', child], capture_output=True, text=True)\n"
        "print(ran.stdout.strip())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )

    assert done.stdout.strip() == "True", done.stderr
