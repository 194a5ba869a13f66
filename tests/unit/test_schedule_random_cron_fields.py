"""A cron field croniter fills at random (`R`) would give each reading its own slots: the plan
after every run, every restart and every worker of a cluster would differ (an hourly `R * * * *`
fired at 01:08, 01:48, 02:10, 02:11, and two workers each claimed their own slot). Refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from duragent.scheduling.spec import Destination, Schedule, ScheduleRequest, next_slot

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def made(cron: str) -> Schedule:
    request = ScheduleRequest.model_validate({"cron": cron, "message": "stretch"})
    return request.build("helper", destination=Destination(), created_by="cli", now=NOW)


@pytest.mark.parametrize("cron", ["R * * * *", "0 R * * *", "R(0-29) 9 * * *", "r * * * *", "0 * * * * R"])
def test_a_random_cron_field_is_refused_naming_cron(cron: str) -> None:
    with pytest.raises(ValueError, match=r"^cron: cron expression .* has a random field \(R\)"):
        made(cron)


@pytest.mark.parametrize("cron", ["0 9 * MAR,APR FRI", "0 9 * * fri", "30 8 * mar *"])
def test_month_and_day_names_with_an_r_are_still_cron(cron: str) -> None:
    schedule = made(cron)
    assert next_slot(schedule, NOW) == next_slot(schedule, NOW)
