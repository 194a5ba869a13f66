"""The dashboard shows a login no more than the API shows its token: the Agents, Gateways and
Processes pages read what only `/api/admin/v1` serves, so a login made with the API token gets a
page saying the admin token is needed (403), and its menu does not offer them; neither do the
Schedules page's broken files nor the History's diffs of agent definitions show to it."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from tests.e2e.server_harness import Api, ApiFactory
from tests.e2e.test_dashboard import browser, data_dir, log_in
from tests.e2e.test_dashboard_agent_reverts_need_the_admin_token import committed_agent_edit

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-api-token"
ADMIN = "ui-admin-token"
#: The pages whose API counterparts need the admin token (`/api/admin/v1/agents`, `/gateways`, `/processes`).
ADMIN_PAGES = ("/ui/agents", "/ui/gateways", "/ui/processes", "/ui/processes/p-unknown")


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=True, api_token=TOKEN, admin_token=ADMIN)
    return result


async def test_a_login_made_with_the_api_token_is_told_the_admin_pages_need_the_admin_token(api: Api) -> None:
    async with browser() as http:
        await log_in(api, http, TOKEN)
        for path in ADMIN_PAGES:
            async with http.get(api.url(path), allow_redirects=False) as page:
                html = await page.text()
                assert page.status == 403, (path, html)
            assert "<h1>403 Admin token needed</h1>" in html, path
            assert "needs a login made with the admin token" in html, path
            assert '<button type="submit">Log out</button>' in html  # (the way to log in with it)
            assert "agent.yaml" not in html  # (the Agents page lists each agent's files)
        async with http.get(api.url("/ui/sessions")) as page:
            menu = await page.text()
        for path in ("/ui/agents", "/ui/gateways", "/ui/processes"):
            assert f'href="{path}"' not in menu, path
        assert 'href="/ui/schedules"' in menu


async def test_a_login_made_with_the_api_token_sent_to_an_admin_page_stops_at_its_refusal(api: Api) -> None:
    async with browser() as http:
        async with http.get(api.url("/ui/login?next=/ui/processes")) as page:
            assert page.status == 200
            form = await page.text()
        form_token = form.split('name="form_token" value="', 1)[1].split('"', 1)[0]
        login = {"token": TOKEN, "form_token": form_token, "next": "/ui/processes"}
        async with http.post(api.url("/ui/login"), data=login) as landed:
            assert landed.status == 403
            assert landed.url.path == "/ui/processes"
            assert len(landed.history) == 1  # (one redirect, from the login: no loop)


async def test_a_login_made_with_the_admin_token_sees_the_admin_pages_and_their_links(api: Api) -> None:
    async with browser() as http:
        await log_in(api, http, ADMIN)
        for path in ("/ui/agents", "/ui/gateways"):
            async with http.get(api.url(path)) as page:
                assert page.status == 200, await page.text()
        async with http.get(api.url("/ui/agents")) as page:
            assert "agent.yaml" in await page.text()
        async with http.get(api.url("/ui/sessions")) as page:
            menu = await page.text()
        for path in ("/ui/agents", "/ui/gateways", "/ui/processes"):
            assert f'href="{path}"' in menu, path


async def test_broken_schedule_files_are_shown_only_to_a_login_made_with_the_admin_token(
    api: Api, tmp_path: Path
) -> None:
    # `GET /api/v1/schedules` lists the schedules; the files that do not load, with their text's
    # place, only `GET /api/admin/v1/schedules`.
    schedules = data_dir(tmp_path) / "schedules"
    schedules.mkdir(parents=True, exist_ok=True)
    (schedules / "sch_HANDEDIT.yaml").write_text("id: sch_HANDEDIT\nevery: [\n")
    async with browser() as http:
        await log_in(api, http, TOKEN)
        async with http.get(api.url("/ui/schedules")) as page:
            assert page.status == 200
            html = await page.text()
        assert "sch_HANDEDIT.yaml" not in html
        assert "admin token" in html  # (it says that some do not load, and who may see why)
    async with browser() as http:
        await log_in(api, http, ADMIN)
        async with http.get(api.url("/ui/schedules")) as page:
            assert "sch_HANDEDIT.yaml:" in await page.text()


async def test_the_text_of_an_agent_definition_changed_shows_only_to_a_login_made_with_the_admin_token(
    api: Api, tmp_path: Path
) -> None:
    # An agent's files are `GET /api/admin/v1/agents/{name}`'s to show (`/api/v1` shows its prompts).
    _definition, sha = await committed_agent_edit(data_dir(tmp_path))
    change = api.url(f"/ui/history/{sha}")
    async with browser() as http:
        await log_in(api, http, TOKEN)
        async with http.get(change) as page:
            assert page.status == 200
            html = await page.text()
        assert "agents/helper/agent.yaml" in html  # (which file changed, as the timeline says)
        assert "An edited agent" not in html
        assert "A test agent" not in html
        assert "the admin token shows" in html
    async with browser() as http:
        await log_in(api, http, ADMIN)
        async with http.get(change) as page:
            html = await page.text()
        assert "An edited agent" in html


async def test_a_wrong_token_keeps_the_page_asked_for_for_the_next_try(api: Api) -> None:
    async with browser() as http:
        async with http.get(api.url("/ui/login?next=/ui/schedules")) as page:
            form = await page.text()
        form_token = form.split('name="form_token" value="', 1)[1].split('"', 1)[0]
        wrong = {"token": "not-the-token", "form_token": form_token, "next": "/ui/schedules"}
        async with http.post(api.url(_action(form)), data=wrong) as refused:  # (as a browser posts it)
            again = await refused.text()
        assert "That token is not valid." in again
        assert 'name="next" value="/ui/schedules"' in again
        assert _action(again) == "/ui/login?next=/ui/schedules"  # (the address bar keeps it too)

        form_token = again.split('name="form_token" value="', 1)[1].split('"', 1)[0]
        right = {"token": TOKEN, "form_token": form_token, "next": "/ui/schedules"}
        async with http.post(api.url(_action(again)), data=right) as landed:
            assert (landed.status, landed.url.path) == (200, "/ui/schedules")


def _action(form: str) -> str:
    return html.unescape(form.split('<form method="post" action="', 1)[1].split('"', 1)[0])
