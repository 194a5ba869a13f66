"""`duragent ui`'s one-time link logs the browser in with the workspace's admin token too, so its
login may use the controls the API keeps for that token (Kill a background process)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer
from tests.e2e.server_harness import ServeProcess, cli, start_serve, write_workspace
from tests.e2e.test_dashboard import browser, csrf_of

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]


@pytest.fixture
def serve(tmp_path: Path, fake_llm: FakeLLMServer) -> Iterator[ServeProcess]:
    config = write_workspace(tmp_path / "ws", fake_llm.url, git=False)
    served = start_serve(config, tmp_path / "serve.log")
    try:
        yield served
    finally:
        served.terminate()


@pytest.mark.slow
async def test_the_duragent_ui_link_logs_in_with_the_admin_token(serve: ServeProcess) -> None:
    done = cli(serve.config, "ui", "--server", serve.url, "--no-browser")
    assert done.returncode == 0, done.stderr
    link = re.search(r"Dashboard: (\S+)", done.stdout)
    assert link is not None, done.stdout
    async with browser() as http:
        async with http.get(link.group(1)) as page:
            assert page.status == 200
        csrf = await csrf_of(http, f"{serve.url}/ui/sessions")
        # an admin login is let through to the process lookup (a login without the admin token gets 403)
        async with http.post(f"{serve.url}/ui/processes/proc_nosuch/kill", data={"csrf": csrf}) as r:
            assert r.status == 404, await r.text()
            assert "no background process" in await r.text()
