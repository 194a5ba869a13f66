"""A process's output read in pages (`log` with offset/limit) and quoted at its end keeps each
UTF-8 character whole: a page boundary inside one showed it as U+FFFD on both pages, so an agent
paging on from `end` lost it, and the `[process finished]` tail began with U+FFFD."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from duragent.processes.manager import ProcessManager
from tests.integration.test_background_processes import managers, reports, request, work
from tests.waiting import until

__all__ = ["managers", "work"]  # the fixtures

#: 3000 bytes of three-byte characters and no newline: neither 100 nor 2000 falls between two.
EUROS = "€" * 1000


async def test_paging_through_the_log_from_each_end_gives_the_output_back_whole(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers()
    await manager.start()
    record = await manager.spawn(request(work, f"printf '%s' '{EUROS}'"))
    await until(lambda: manager.get(record.handle).ended)

    pages, offset = [], 0
    while offset < manager.get(record.handle).output_bytes:
        page = await manager.read_log(record.handle, "helper", offset, 100)
        assert page.end - page.offset <= 100
        pages.append(page.text)
        offset = page.end

    assert "".join(pages) == EUROS
    end = await manager.read_log(record.handle, "helper", None, 100)  # the last 100 bytes
    assert end.text == "€" * 33
    assert end.offset == 3000 - 99


async def test_the_tail_quoted_at_the_end_starts_with_a_whole_character(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers(tail_bytes=2000)
    await manager.start()
    await manager.spawn(request(work, f"printf '%s' '{EUROS}'"))

    await until(lambda: reports(manager))

    _, tail = reports(manager)[0]
    assert tail == "€" * 666
