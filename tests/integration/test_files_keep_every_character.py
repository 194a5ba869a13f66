"""Schedule files and process records read back exactly as written: a character YAML takes for a
line break (U+0085, NEL) used to come back as a space, silently changing a reminder's text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from duragent.processes.manager import ProcessManager
from duragent.scheduling.spec import Destination, ScheduleRequest
from duragent.scheduling.store import FileScheduleStore
from duragent.stores.base import utcnow
from tests.integration.test_background_processes import managers, reports, request, work
from tests.waiting import until

__all__ = ["managers", "work"]  # the fixtures

TEXT = "line one\x85still line one, café"


async def test_a_schedule_message_with_a_nel_reads_back_unchanged(tmp_path: Path) -> None:
    store = FileScheduleStore(tmp_path / "schedules")
    made = ScheduleRequest.model_validate({"every": "1h", "message": TEXT, "label": "café"}).build(
        "helper", destination=Destination(), created_by="test", now=utcnow()
    )
    await store.put(made, "created")

    again = await FileScheduleStore(tmp_path / "schedules").get(made.id)

    assert again == made
    assert "café" in store.path_of(made.id).read_text()  # other text stays as people wrote it


async def test_a_process_command_with_a_nel_reads_back_unchanged(
    managers: Callable[..., ProcessManager], work: Path
) -> None:
    manager = managers()
    await manager.start()
    record = await manager.spawn(request(work, f"echo '{TEXT}'"))
    await until(lambda: reports(manager))

    restarted = managers()
    await restarted.start()

    assert restarted.get(record.handle).command == f"echo '{TEXT}'"
