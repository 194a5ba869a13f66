"""Reverting a change to an agent's definition rewrites the agent, which the API leaves to the admin
token (`/api/admin/v1/agents`): the dashboard asks a login made with it, while any login reverts a
memory change."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.e2e.server_harness import Api, ApiFactory
from tests.e2e.test_dashboard import browser, csrf_of, log_in
from tests.waiting import Held, until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-api-token"
ADMIN = "ui-admin-token"


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=True, api_token=TOKEN, admin_token=ADMIN)
    return result


def commits_of(data: Path, path: str) -> list[str]:
    """The commits that changed `path`, newest first."""
    log = ["git", "log", "--format=%H", "--", path]
    return subprocess.run(log, cwd=data, check=True, capture_output=True, text=True).stdout.split()


async def committed_agent_edit(data: Path) -> tuple[Path, str]:
    """A person's edit of helper's definition, once the server committed it; the file and the commit."""
    definition = data / "agents" / "helper" / "agent.yaml"
    definition.write_text(definition.read_text().replace("A test agent", "An edited agent"))
    await until(lambda: len(commits_of(data, "agents/helper/agent.yaml")) == 2)
    return definition, commits_of(data, "agents/helper/agent.yaml")[0]


async def test_only_a_login_made_with_the_admin_token_reverts_an_agent_definition(
    api: Api, tmp_path: Path
) -> None:
    definition, sha = await committed_agent_edit(tmp_path / "ws0" / "data")
    change = api.url(f"/ui/history/{sha}")
    async with browser() as http:
        await log_in(api, http, TOKEN)
        async with http.get(change) as page:
            html = await page.text()
        assert "Yes, revert this change" not in html
        assert "admin token" in html  # (it says why there is no Revert)
        csrf = await csrf_of(http, api.url("/ui/sessions"))
        async with http.post(f"{change}/revert", data={"csrf": csrf, "confirm": "yes"}) as r:
            assert r.status == 403
            assert "admin token" in await r.text()
        assert "An edited agent" in definition.read_text()

    async with browser() as http:
        await log_in(api, http, ADMIN)
        async with http.get(change) as page:
            assert "Yes, revert this change" in await page.text()
        csrf = await csrf_of(http, change)
        async with http.post(f"{change}/revert", data={"csrf": csrf, "confirm": "yes"}) as r:
            assert r.status == 200
            assert "Reverted" in await r.text()
        assert "A test agent" in definition.read_text()


async def test_a_revert_of_head_reverts_the_change_checked_not_one_committed_meanwhile(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `HEAD` names one commit when the login's right to revert it is checked and another once an
    # agent's definition is committed in between: a login without the admin token must not
    # revert that one.
    from duragent.vcs import revisions

    data = tmp_path / "ws0" / "data"
    memory = data / "memory" / "helper" / "MEMORY.md"
    memory.parent.mkdir(parents=True, exist_ok=True)
    for count, text in enumerate(["- likes tea\n", "- likes tea\n- likes coffee\n"], start=1):
        memory.write_text(text)
        await until(lambda: len(commits_of(data, "memory/helper/MEMORY.md")) == count)  # noqa: B023
    reverting = Held(revisions.revert_revision)
    monkeypatch.setattr(revisions, "revert_revision", reverting)
    async with browser() as http:
        await log_in(api, http, TOKEN)
        csrf = await csrf_of(http, api.url("/ui/sessions"))
        post = asyncio.create_task(
            http.post(api.url("/ui/history/HEAD/revert"), data={"csrf": csrf, "confirm": "yes"})
        )
        try:
            await until(reverting.entered.is_set)  # checked: a memory change, any login may revert it
            definition, _ = await committed_agent_edit(data)
        finally:
            reverting.release.set()
        async with await post as response:
            assert response.status == 200, await response.text()
    assert "An edited agent" in definition.read_text()  # (was: reverted by a login without the admin token)
    assert memory.read_text() == "- likes tea\n"
