"""A real worker process whose scheduler starts a run that never ends, for the tests that kill it
(run as a script, not imported).

    schedule_worker.py PG_URL SLOT   a scheduler on PG_URL whose clock stands a second before SLOT
        (RFC 3339) while it starts, then at SLOT; prints "running <schedule id>" when a run starts,
        which never ends
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta

from duragent.scheduling.postgres import PostgresScheduleStore
from duragent.scheduling.service import Scheduler, SchedulerSettings
from duragent.scheduling.spec import Schedule
from duragent.scheduling.store import parse_time


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def run_forever(schedule: Schedule, slot: datetime) -> str:
    print(f"running {schedule.id}", flush=True)
    await asyncio.Event().wait()
    return "s_NEVER"


async def main(url: str, slot: datetime) -> None:
    clock = Clock(slot - timedelta(seconds=1))
    scheduler = Scheduler(
        PostgresScheduleStore(url),
        run_forever,
        clock=clock,
        worker="doomed",
        settings=SchedulerSettings(poll_interval=3600),
    )
    await scheduler.start()  # (plans SLOT)
    clock.now = slot
    scheduler.poke()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], parse_time(sys.argv[2])))
