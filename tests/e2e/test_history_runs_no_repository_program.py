"""The dashboard's history pages run no program the data repository's own configuration names.

A textconv driver (`diff.<name>.textconv` with a `diff=<name>` attribute) or `log.showSignature`
(which has `git log` and `git show` run `gpg.program` on every signed commit) would run, inside
the server and with its environment, whenever someone looks at the history.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import aiohttp

from tests.e2e.server_harness import Api, ApiFactory

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "history-test-token"
#: Logs in to see an agent definition's diff (the admin API's to show).
ADMIN = "history-test-admin-token"


def git(data: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=data, input=stdin, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def signed_commit_on_head(data: Path) -> str:
    """A commit carrying a (bogus) signature, on top of HEAD: verifying it runs `gpg.program`."""
    tree, head = git(data, "rev-parse", "HEAD^{tree}"), git(data, "rev-parse", "HEAD")
    when = "1700000000 +0000"
    body = (
        f"tree {tree}\nparent {head}\nauthor A <a@example.com> {when}\n"
        f"committer A <a@example.com> {when}\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n"
        " -----END PGP SIGNATURE-----\n\nsigned\n"
    )
    sha = git(data, "hash-object", "-t", "commit", "-w", "--stdin", stdin=body)
    git(data, "update-ref", "HEAD", sha)
    return sha


async def page(api: Api, http: aiohttp.ClientSession, path: str) -> str:
    async with http.get(api.url(path)) as response:
        assert response.status == 200, await response.text()
        return await response.text()


async def test_history_pages_run_no_textconv_nor_signature_program_of_the_repository(
    start_api: ApiFactory, tmp_path: Path
) -> None:
    api = await start_api(git=True, api_token=TOKEN, admin_token=ADMIN)
    data = tmp_path / "ws0" / "data"
    ran = tmp_path / "ran"
    program = tmp_path / "program.sh"
    program.write_text(f'#!/bin/sh\necho "$0 $*" >> {ran}\ncat "$1" 2>/dev/null\nexit 1\n')
    program.chmod(0o755)
    first = git(data, "rev-parse", "HEAD")  # the agents' files, added
    git(data, "config", "diff.shown.textconv", str(program))
    git(data, "config", "log.showSignature", "true")
    git(data, "config", "gpg.program", str(program))
    (data / ".git" / "info" / "attributes").write_text("* diff=shown\n")
    signed = signed_commit_on_head(data)

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(api.url("/ui/login")) as login:
            form_token = re.search(r'name="form_token" value="([^"]+)"', await login.text())
        assert form_token is not None
        fields = {"token": ADMIN, "form_token": form_token.group(1), "next": "/ui/history"}
        async with http.post(api.url("/ui/login"), data=fields) as response:
            assert response.status == 200
        timeline = await page(api, http, "/ui/history")
        shown = await page(api, http, f"/ui/history/{first}")
        await page(api, http, f"/ui/history/{signed}")

    assert signed[:7] in timeline
    assert "agents/helper/agent.yaml" in shown
    assert "You are a test agent." in shown, "the file's own text is shown"
    assert not ran.exists(), f"the history ran the repository's programs: {ran.read_text()}"
