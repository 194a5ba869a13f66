"""The dashboard shows a command waiting for approval as bash will run it.

Bidirectional isolates reorder text in a browser: the command below reads
`ls # notes.txt ; cat ../../run/tokens.json` there, everything after `ls` seemingly a comment,
while bash runs the `cat`. The dashboard writes such characters out as escapes (`\\u2067`), as
the terminal does, on the pages the server renders and on what arrives live over the event
stream; the memory editor alone keeps a file's text exactly, so saving it changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from duragent.server.state import STATE
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from tests.e2e.browser import CHROMIUM_FLAGS, chromium
from tests.e2e.server_harness import Api, ApiFactory
from tests.e2e.test_agent_cannot_escape_its_policy import send
from tests.e2e.test_dashboard import browser, log_in
from tests.waiting import until

pytest_plugins = ["duragent.testing.pytest_plugin", "tests.e2e.server_harness"]

TOKEN = "ui-test-token"
#: Runs `cat ../../run/tokens.json`; a browser shows `ls # notes.txt ; cat ../../run/tokens.json`.
DISGUISED = "ls \u2067\u2066 ; cat ../../run/tokens.json \u2069 \u2066 # notes.txt \u2069\u2069"
SHOWN = r"ls \u2067\u2066 ; cat ../../run/tokens.json \u2069 \u2066 # notes.txt \u2069\u2069"
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
async def api(start_api: ApiFactory) -> Api:
    result: Api = await start_api(git=False, api_token=TOKEN)
    return result


async def ask_for_the_disguised_command(api: Api, fake_llm: FakeLLMServer) -> str:
    """A session whose turn waits for approval of DISGUISED; its id."""
    fake_llm.enqueue(tool_calls([("bash", {"command": DISGUISED})]), text("done"))
    session_id = await api.new_session()
    status, pending = await send(api, session_id)
    assert status == 202, pending
    assert pending["command"] == DISGUISED
    return session_id


async def session_page(api: Api, session_id: str) -> str:
    """The HTML of the session's dashboard page, as a logged-in browser gets it."""
    async with browser() as http:
        await log_in(api, http)
        async with http.get(api.url(f"/ui/sessions/{session_id}")) as page:
            return await page.text()


async def test_a_waiting_command_is_shown_with_its_bidirectional_characters_as_escapes(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    session_id = await ask_for_the_disguised_command(api, fake_llm)
    html = await session_page(api, session_id)

    assert BIDI.search(html) is None
    approval = re.search(r"The agent wants to run <code>(.*?)</code>", html)
    assert approval is not None
    assert approval.group(1) == SHOWN


async def test_a_tool_calls_arguments_read_as_the_model_wrote_them(api: Api, fake_llm: FakeLLMServer) -> None:
    """Not as JSON written for a <script> element (`\\u003c`, `caf\\u00e9`): the page escapes its
    text as HTML, and its bidirectional characters as the other values'."""
    command = "grep '<title>' caf\u00e9.html && echo ok \u2067"
    fake_llm.enqueue(tool_calls([("bash", {"command": command})]), text("done"))
    session_id = await api.new_session()
    status, _ = await send(api, session_id)
    assert status == 202
    html = await session_page(api, session_id)

    arguments = re.search(r'<code class="args">(.*?)</code>', html)
    assert arguments is not None
    assert arguments.group(1) == (
        "{&#34;command&#34;: &#34;grep &#39;&lt;title&gt;&#39; "
        "caf\u00e9.html &amp;&amp; echo ok \\u2067&#34;}"
    )


async def test_a_tool_other_than_bash_waiting_for_approval_is_named_beside_its_arguments(
    api: Api, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """`update_world` alone would not say what the person is asked to allow."""
    registry = api.server.app[STATE].agents
    loaded = registry.cached("helper")
    agent_yaml = tmp_path / "ws0" / "data" / "agents" / "helper" / "agent.yaml"
    agent_yaml.write_text(agent_yaml.read_text().replace("builtin: [bash]", "builtin: [bash, memory]"))
    await until(lambda: registry.cached("helper") is not loaded, within=20)
    fake_llm.enqueue(tool_calls([("memory", {"action": "update_world", "topic": "home", "content": "x"})]))
    session_id = await api.new_session()
    status, _ = await send(api, session_id)
    assert status == 202
    html = await session_page(api, session_id)

    assert "The agent wants to call <code>memory</code> with <code>update_world</code>" in html
    assert "? approval asked for <code>memory</code> <code>update_world</code>" in html


async def test_the_memory_editor_keeps_the_files_text_exactly(api: Api, tmp_path: Path) -> None:
    """What the editor sends back on save is the file as it is, its control characters too."""
    memory = tmp_path / "ws0" / "data" / "memory" / "helper" / "MEMORY.md"
    memory.parent.mkdir(parents=True, exist_ok=True)
    memory.write_text("# Memory\n- a fact \u2067with an isolate\u2069\n")
    async with browser() as http:
        await log_in(api, http)
        async with http.get(api.url("/ui/memory/helper/MEMORY.md")) as page:
            html = await page.text()

    editor = re.search(r'<textarea id="text"[^>]*>(.*?)</textarea>', html, re.S)
    assert editor is not None
    assert editor.group(1) == "# Memory\n- a fact \u2067with an isolate\u2069\n"


@pytest.mark.slow
async def test_a_command_arriving_live_in_a_browser_is_shown_as_bash_will_run_it(
    api: Api, fake_llm: FakeLLMServer
) -> None:
    """The approval form the page's script adds from the event stream, in headless Chromium."""
    playwright_api = pytest.importorskip("playwright.async_api")
    executable = chromium()
    session_id = await api.new_session()
    async with playwright_api.async_playwright() as playwright:
        chrome = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = await chrome.new_page()
            page.set_default_timeout(20_000)
            await page.goto(api.url("/ui/login"))
            await page.fill("#token", TOKEN)
            await page.click("button[type=submit]")
            # (the page follows the session from its last event: what comes next arrives live)
            await page.goto(api.url(f"/ui/sessions/{session_id}"))
            fake_llm.enqueue(tool_calls([("bash", {"command": DISGUISED})]), text("done"))
            status, _ = await send(api, session_id)
            assert status == 202

            question = page.locator("#approvals form.approval code").last
            await playwright_api.expect(question).to_have_text(SHOWN)
            transcript = await page.locator("#transcript").inner_text()
        finally:
            await chrome.close()

    assert BIDI.search(transcript) is None
