"""The dashboard's schedules page over HTTP (in-process server): list, details, and its forms."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.server_harness import Api, ApiFactory
from tests.e2e.test_changes_asked_for_over_http_are_committed_as_the_persons import (
    PERSON,
    authors_and_trailers,
)
from tests.e2e.test_dashboard import ADMIN, TOKEN, browser, csrf_of, data_dir, log_in
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

API_AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=True, api_token=TOKEN, admin_token=ADMIN)
    return result


async def make_schedule(api: Api, **fields: object) -> str:
    body = {"agent": "helper", "every": "1h", "message": "drink water", "label": "hydrate", **fields}
    status, made = await api.call("POST", "/api/v1/schedules", body, headers=API_AUTH)
    assert status == 201, made
    return str(made["schedule"]["id"])


async def page(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.text()


async def post(http: aiohttp.ClientSession, url: str, **form: str) -> aiohttp.ClientResponse:
    response = await http.post(url, data=form, allow_redirects=False)
    response.release()
    return response


async def test_the_list_shows_state_next_run_last_runs_and_broken_files(api: Api, tmp_path: Path) -> None:
    schedule_id = await make_schedule(api)
    status, _ = await api.call("POST", f"/api/v1/schedules/{schedule_id}/run", headers=API_AUTH)
    assert status == 200
    (data_dir(tmp_path) / "schedules" / "sch_HANDEDIT.yaml").write_text("id: sch_HANDEDIT\nevery: [\n")
    async with browser() as http:
        await log_in(api, http, ADMIN)  # (broken files are the admin API's to show)
        html = await page(http, api.url("/ui/schedules"))
    row = re.search(rf"<tr>\s*<td><a href=\"/ui/schedules/{schedule_id}\">.*?</tr>", html, re.S)
    assert row is not None, html
    assert "hydrate" in row.group(0)
    assert "state-active" in row.group(0)
    assert "every 1h" in row.group(0)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row.group(0))  # the next run
    assert "run-ok" in row.group(0)
    assert "run-started" not in row.group(0)  # the claim line of a run that has its outcome
    assert "sch_HANDEDIT.yaml:" in html  # the file a person broke, with where
    assert 'aria-current="page">Schedules' in html


async def test_pause_resume_run_now_and_delete_from_the_page(api: Api, tmp_path: Path) -> None:
    schedule_id = await make_schedule(api)
    base = f"/ui/schedules/{schedule_id}"
    async with browser() as http:
        await log_in(api, http)
        csrf = await csrf_of(http, api.url(base))
        paused = await post(http, api.url(f"{base}/pause"), csrf=csrf)
        assert (paused.status, paused.headers["Location"]) == (303, f"{base}?done=paused")
        html = await page(http, api.url(paused.headers["Location"]))
        assert "state-paused" in html
        assert "Next run (UTC)</th><td>–" in html
        assert f'action="{base}/resume"' in html
        resumed = await post(http, api.url(f"{base}/resume"), csrf=csrf)
        assert resumed.headers["Location"] == f"{base}?done=resumed"
        ran = await post(http, api.url(f"{base}/run"), csrf=csrf)
        assert ran.headers["Location"] == f"{base}?done=ran-ok"
        html = await page(http, api.url(ran.headers["Location"]))
        assert "Ran now: ok." in html
        assert "run-ok" in html
        unconfirmed = await post(http, api.url(f"{base}/delete"), csrf=csrf)
        assert unconfirmed.headers["Location"] == base
        assert (data_dir(tmp_path) / "schedules" / f"{schedule_id}.yaml").exists()
        deleted = await post(http, api.url(f"{base}/delete"), csrf=csrf, confirm="yes")
        assert deleted.headers["Location"] == "/ui/schedules?done=deleted"
        assert not (data_dir(tmp_path) / "schedules" / f"{schedule_id}.yaml").exists()
        async with http.get(api.url(base)) as gone:
            assert gone.status == 404
            assert gone.content_type == "text/html"


async def test_schedule_forms_need_the_csrf_token(api: Api, tmp_path: Path) -> None:
    schedule_id = await make_schedule(api)
    async with browser() as http:
        await log_in(api, http)
        for action in ("pause", "run", "delete"):
            refused = await post(
                http, api.url(f"/ui/schedules/{schedule_id}/{action}"), csrf="forged", confirm="yes"
            )
            assert refused.status == 403
    status, body = await api.call("GET", f"/api/v1/schedules/{schedule_id}", headers=API_AUTH)
    assert status == 200
    assert body["schedule"]["status"] == "active"
    assert body["runs"] == []


async def test_pause_resume_and_delete_from_the_page_are_committed_as_the_persons(
    api: Api, tmp_path: Path
) -> None:
    data = data_dir(tmp_path)
    schedule_id = await make_schedule(api)
    schedule_file = f"schedules/{schedule_id}.yaml"
    base = f"/ui/schedules/{schedule_id}"
    async with browser() as http:
        await log_in(api, http)
        csrf = await csrf_of(http, api.url(base))
        await until(lambda: len(authors_and_trailers(data, schedule_file)) == 1, within=30)
        # each change committed before the next (in one batch, a file made and removed is no change)
        for number, (action, form) in enumerate(
            [("pause", {}), ("resume", {}), ("delete", {"confirm": "yes"})], start=2
        ):
            answer = await post(http, api.url(f"{base}/{action}"), csrf=csrf, **form)
            assert answer.status == 303, action
            await until(
                lambda count=number: len(authors_and_trailers(data, schedule_file)) == count, within=30
            )
    assert (
        authors_and_trailers(data, schedule_file)
        == [f"{PERSON}|Duragent-Kind: schedule, Duragent-By: person"] * 4
    )
