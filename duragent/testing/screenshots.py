"""The dashboard's screenshots in docs/dashboard.md, taken again from a real `duragent serve`.

    python -m duragent.testing.screenshots docs/dashboard

Copies the example workspace (`examples/` of the source tree, or `--workspace`) to a temporary
folder, points its agents' models at a `FakeLLMServer` (their provider and model name kept), starts
`duragent serve` on it, and drives the distribution's Chromium (`--chromium`, else `chromium` on
PATH) with Playwright through every page the docs show, logged in with the workspace's admin token
(so every page opens). Each page is saved as `dashboard-<name>.png`; the example workspace itself is
left as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import yaml

from duragent.access_tokens import AccessTokens, ensure_tokens
from duragent.testing.fake_llm import FakeLLMServer, text

#: The source tree's example workspace (a checkout's; an installed package has none).
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"]
#: Keys the example agents' providers read; any value will do for the fake model.
FAKE_KEYS = {"OPENROUTER_API_KEY": "sk-fake", "ANTHROPIC_API_KEY": "sk-fake", "OPENAI_API_KEY": "sk-fake"}
#: Who the workspace's first commit and the memory edit are committed as (the pages show it): the
#: git configuration of a home folder of its own, not that of whoever runs this.
PERSON_GITCONFIG = "[user]\n\tname = Ada Example\n\temail = ada@example.com\n"
#: What the agent answers on the session's page.
REPLY = (
    "Noted: you prefer tea to coffee, and standup is at 9:30. I have put both in my memory, "
    "so I will remember them tomorrow too."
)


def copy_workspace(source: Path, target: Path, model_url: str, env: dict[str, str]) -> Path:
    """`source`'s duragent.yaml and data folder copied into `target`, each agent's model pointed at
    `model_url`, committed as `duragent init` leaves a workspace (git run with `env`); the copy's
    config file."""
    shutil.copy2(source / "duragent.yaml", target / "duragent.yaml")
    shutil.copytree(source / ".duragent", target / ".duragent", ignore=shutil.ignore_patterns("run", "logs"))
    for definition in sorted((target / ".duragent" / "agents").glob("*/agent.yaml")):
        document = yaml.safe_load(definition.read_text(encoding="utf-8"))
        spec = document.get("spec", document)
        spec["model"]["base_url"] = model_url
        definition.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "The example workspace"]):
        subprocess.run(["git", *command], cwd=target / ".duragent", check=True, capture_output=True, env=env)
    return target / "duragent.yaml"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(config: Path, env: dict[str, str]) -> Iterator[str]:
    """`duragent serve` on `config`, on a free port, until the block ends; its URL."""
    port = free_port()
    log = config.parent / "serve.log"
    with log.open("w") as output:
        command = [sys.executable, "-m", "duragent", "-c", str(config), "serve", "--port", str(port)]
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_for_port(server, port, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_port(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"duragent serve exited with {server.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"duragent serve did not start in 60 s:\n{log.read_text()}")


@asynccontextmanager
async def chromium_page(executable: str) -> AsyncIterator[Any]:
    """A page of headless Chromium, as wide as the docs' screenshots."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 1000, "height": 640})
            page.set_default_timeout(20_000)
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            yield page
        finally:
            await browser.close()


async def take(page: Any, url: str, admin_token: str, folder: Path) -> list[Path]:
    """Go through the pages the docs show, saving each; the files written."""
    from playwright.async_api import expect

    written: list[Path] = []

    async def shot(name: str) -> None:
        path = folder / f"dashboard-{name}.png"
        await page.screenshot(path=str(path))
        written.append(path)

    await page.goto(url + "/ui/")
    await expect(page.locator("h1")).to_have_text("Log in")
    await shot("login")
    await page.fill("#token", admin_token)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Sessions")

    await page.select_option("#agent", "assistant")
    await page.click("text=Start")
    await page.fill("#content", "I prefer tea to coffee, and standup is at 9:30. Remember that.")
    await page.click("#send button")
    await expect(page.locator(".msg.assistant .text").last).to_have_text(REPLY)
    await shot("session")
    await page.goto(url + "/ui/sessions")
    await expect(page.locator("tbody tr")).to_have_count(1)
    await shot("sessions")

    await page.click("nav >> text=Memory")
    await shot("memory")
    await page.click("a[href='/ui/memory/assistant/MEMORY.md']")
    current = await page.input_value("#text")
    await page.fill("#text", current.rstrip("\n") + "\n- Prefers tea to coffee; standup at 9:30.\n")
    await page.click("form.editor button")
    await expect(page.locator(".notice")).to_contain_text("Saved and committed as")
    await shot("memory-file")
    await page.click("nav >> text=History")
    # (the row of the edit: the session's own commit may come before or after it)
    edit = page.locator("table.timeline tbody tr", has_text="edit: memory/assistant/MEMORY.md")
    await expect(edit).to_have_count(1)
    await shot("history")
    await edit.locator("a").first.click()
    await expect(page.locator("ins", has_text="Prefers tea to coffee")).to_be_visible()
    await shot("revision")

    await page.click("nav >> text=Agents")
    await expect(page.locator("section.agent h2").first).to_be_visible()
    await shot("agents")
    await page.click("nav >> text=Gateways")
    await shot("gateways")

    await page.click("nav >> text=Schedules")
    await expect(page.locator("table.schedules tbody tr")).to_have_count(1)
    await shot("schedules")
    row = page.locator("table.schedules tbody tr").first
    await row.locator("a").first.click()
    await page.click("text=Run now")
    await expect(page.locator(".notice")).to_contain_text("Ran now")
    await shot("schedule")
    return written


def make_schedule(url: str, api_token: str) -> None:
    """A morning reminder, made over the API as `duragent schedule add` would."""
    import json
    import urllib.request

    body = {"agent": "assistant", "cron": "30 9 * * MON-FRI", "message": "Standup in five minutes."}
    request = urllib.request.Request(
        url + "/api/v1/schedules",
        data=json.dumps({**body, "label": "standup reminder"}).encode(),
        headers={"Authorization": f"Bearer {api_token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        if response.status != 201:
            raise RuntimeError(f"the schedule was not made: {response.status} {response.read()!r}")


def prepare(scratch: Path, workspace: Path, model_url: str) -> tuple[Path, dict[str, str], AccessTokens]:
    """The copy of `workspace` in `scratch` (its config file), the environment to serve it with (a
    home folder of its own, the providers' keys), and its tokens."""
    home = scratch / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(PERSON_GITCONFIG, encoding="utf-8")
    env = {**os.environ, **FAKE_KEYS, "HOME": str(home), "DURAGENT_API_TOKEN": ""}
    env.pop("XDG_CONFIG_HOME", None)
    config = copy_workspace(workspace, scratch, model_url, env)
    return config, env, ensure_tokens(scratch / ".duragent")


async def main(folder: Path, workspace: Path, chromium: str) -> list[Path]:
    """Take every screenshot into `folder`; the files written."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="duragent-screenshots-") as scratch:
        async with FakeLLMServer() as model:
            model.enqueue(text(REPLY, chunks=6))
            config, env, tokens = await asyncio.to_thread(prepare, Path(scratch), workspace, model.url)
            with serving(config, env) as url:
                await asyncio.to_thread(make_schedule, url, tokens.api)
                async with chromium_page(chromium) as page:
                    return await take(page, url, tokens.admin, folder)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m duragent.testing.screenshots", description=__doc__)
    parser.add_argument("folder", type=Path, help="where the PNG files go (docs/dashboard)")
    parser.add_argument("--workspace", type=Path, default=EXAMPLES, help="the workspace shown (examples/)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    if not (args.workspace / "duragent.yaml").is_file():
        parser.error(f"{args.workspace} has no duragent.yaml: give --workspace")
    if not args.chromium:
        parser.error("no chromium on PATH (Debian: apt-get install chromium): give --chromium")
    for path in asyncio.run(main(args.folder, args.workspace, args.chromium)):
        print(path)


if __name__ == "__main__":
    cli()
