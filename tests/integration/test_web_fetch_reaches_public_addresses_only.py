"""web_fetch refuses loopback, private and link-local addresses, however the URL spells them and
wherever a redirect leads, unless the tool is given the network; the servers are real, on 127.0.0.x."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from duragent.agents.loader import load_agent
from duragent.errors import ConfigError
from duragent.runtime.events import ToolCallFinished
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from duragent.tools.base import ToolContext
from duragent.tools.web import MAX_REDIRECTS, WebFetchArgs, WebFetchTool
from tests.integration.turn_setup import agent_in, runtime_on, turn_answering

pytest_plugins = ["duragent.testing.pytest_plugin"]


class Site:
    """A real HTTP server on a loopback address that records the paths it was asked for."""

    def __init__(self, host: str) -> None:
        self.paths: list[str] = []
        app = web.Application()
        app.router.add_get("/{path:.*}", self._answer)
        self.server = TestServer(app, host=host)

    async def _answer(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        if request.path == "/redirect":
            raise web.HTTPFound(request.query["to"])
        if request.path == "/loop":
            raise web.HTTPFound("/loop")
        return web.Response(text="admin page: secrets", content_type="text/plain")

    @property
    def port(self) -> int:
        port = self.server.port
        assert port is not None
        return port

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    site = Site("127.0.0.1")
    await site.server.start_server()
    yield site
    await site.server.close()


@pytest.fixture
async def other_site() -> AsyncIterator[Site]:
    site = Site("127.0.0.2")  # (all of 127.0.0.0/8 is this machine on Linux)
    await site.server.start_server()
    yield site
    await site.server.close()


def context(tmp_path: Path) -> ToolContext:
    return ToolContext(agent="helper", session_id="s_test", workdir=tmp_path)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/", "127.0.0.1 is a loopback address"),
        ("http://[::1]:{port}/", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]:{port}/", "is a loopback address"),
        ("http://0.0.0.0:{port}/", "0.0.0.0 is a loopback address"),
        ("http://localhost:{port}/", "localhost resolves to"),
        ("http://0x7f000001:{port}/", "0x7f000001 resolves to 127.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://10.1.2.3/", "10.1.2.3 is a private network address"),
        ("http://192.168.1.1/admin", "192.168.1.1 is a private network address"),
        ("http://[fd00::1]/", "fd00::1 is a private network address"),
        ("http://[fec0::1]/", "fec0::1 is a private network address"),
        ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe is a link-local address"),
        ("http://[2002:a9fe:a9fe::]/", "2002:a9fe:a9fe:: is a link-local address"),
    ],
)
async def test_addresses_off_the_internet_are_refused_before_connecting(
    site: Site, tmp_path: Path, url: str, reason: str
) -> None:
    url = url.format(port=site.port)

    result = await WebFetchTool().run(WebFetchArgs(url=url), context(tmp_path))

    assert not result.ok
    assert result.content.startswith(f"refused {url!r}: ")
    assert reason in result.content
    assert "public internet addresses only" in result.content
    assert site.paths == []


@pytest.mark.parametrize("spelling", ["2130706433", "0177.0.0.1", "127.1"])
async def test_legacy_spellings_of_loopback_are_refused(site: Site, tmp_path: Path, spelling: str) -> None:
    result = await WebFetchTool().run(WebFetchArgs(url=f"http://{spelling}:{site.port}/"), context(tmp_path))

    assert not result.ok
    assert "secrets" not in result.content
    assert site.paths == []


async def test_a_redirect_to_a_refused_address_is_not_followed(
    site: Site, other_site: Site, tmp_path: Path
) -> None:
    fetcher = WebFetchTool(allowed_networks=["127.0.0.1/32"])
    target = other_site.url("/admin")

    result = await fetcher.run(WebFetchArgs(url=site.url(f"/redirect?to={target}")), context(tmp_path))

    assert not result.ok
    assert f"it redirects to {target}, and 127.0.0.2 is a loopback address" in result.content
    assert site.paths == ["/redirect"]
    assert other_site.paths == []


async def test_a_redirect_to_cloud_metadata_is_not_followed(site: Site, tmp_path: Path) -> None:
    fetcher = WebFetchTool(allowed_networks=["127.0.0.1"])
    target = "http://169.254.169.254/latest/meta-data/iam/"

    result = await fetcher.run(WebFetchArgs(url=site.url(f"/redirect?to={target}")), context(tmp_path))

    assert not result.ok
    assert "169.254.169.254 is a link-local address" in result.content


async def test_a_redirect_out_of_http_is_refused(site: Site, tmp_path: Path) -> None:
    fetcher = WebFetchTool(allowed_networks=["127.0.0.1"])

    result = await fetcher.run(
        WebFetchArgs(url=site.url("/redirect?to=file:///etc/passwd")), context(tmp_path)
    )

    assert not result.ok
    assert "it redirects to 'file:///etc/passwd', which is not an http(s) URL" in result.content


async def test_an_allowed_network_is_fetched_and_its_redirects_followed(
    site: Site, other_site: Site, tmp_path: Path
) -> None:
    fetcher = WebFetchTool(allowed_networks=["127.0.0.0/8"])
    target = other_site.url("/notes")

    result = await fetcher.run(WebFetchArgs(url=site.url(f"/redirect?to={target}")), context(tmp_path))

    assert result.ok
    assert result.content == f"Source: {target}\n\nadmin page: secrets"
    assert other_site.paths == ["/notes"]


async def test_a_redirect_loop_ends_with_a_clear_failure(site: Site, tmp_path: Path) -> None:
    fetcher = WebFetchTool(allowed_networks=["127.0.0.1"])

    result = await fetcher.run(WebFetchArgs(url=site.url("/loop")), context(tmp_path))

    assert not result.ok
    assert result.content == f"gave up after {MAX_REDIRECTS} redirects, the last to {site.url('/loop')}"
    assert len(site.paths) == MAX_REDIRECTS + 1


async def fetch_in_a_turn(
    tmp_path: Path, fake_llm: FakeLLMServer, session: SessionLog, tools_yaml: str, url: str
) -> ToolCallFinished:
    """The result of a turn's web_fetch of `url`, for an agent with `tools_yaml` (asked: allowed)."""
    model = f"name: helper\nmodel:\n  provider: openai\n  name: gpt-test\n  base_url: {fake_llm.url}\n"
    agent = agent_in(tmp_path, model + tools_yaml)
    fake_llm.enqueue(tool_calls([("web_fetch", {"url": url})]), text("Done."))
    async with runtime_on(tmp_path, memory=False, workdir=False) as runtime:
        events = await turn_answering(runtime, session, agent, "read it", "allow_once")
    [fetched] = [event for event in events if isinstance(event, ToolCallFinished)]
    return fetched


async def test_a_turn_whose_policy_allows_every_fetch_still_cannot_reach_this_machine(
    tmp_path: Path, fake_llm: FakeLLMServer, session: SessionLog, site: Site
) -> None:
    """`site` stands for the server's own API or any service listening on 127.0.0.1."""
    local = site.url("/api/admin/v1/agents")
    tools = "tools:\n  builtin: [web_fetch]\n  policy: {mode: ask, allow: ['web_fetch:*']}\n"

    fetched = await fetch_in_a_turn(tmp_path, fake_llm, session, tools, local)

    assert not fetched.ok
    assert fetched.content.startswith(f"refused {local!r}: 127.0.0.1 is a loopback address (this machine)")
    assert site.paths == []


async def test_agent_yaml_lets_web_fetch_reach_a_network_of_its_own(
    tmp_path: Path, fake_llm: FakeLLMServer, session: SessionLog, site: Site
) -> None:
    """A LAN service (Home Assistant at 192.168.1.20, say): the person names its network."""
    tools = "tools:\n  - {name: web_fetch, allow_networks: [127.0.0.0/8]}\n  - read_file\n"

    fetched = await fetch_in_a_turn(tmp_path, fake_llm, session, tools, site.url("/status"))

    assert fetched.ok, fetched.content
    assert fetched.content.endswith("admin page: secrets")
    assert site.paths == ["/status"]


def test_a_network_agent_yaml_names_wrongly_is_refused_at_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "agents" / "helper"
    folder.mkdir(parents=True)
    (folder / "agent.yaml").write_text(
        "name: helper\nmodel:\n  provider: openai\n  name: gpt-test\n"
        "tools:\n  builtin: [web_fetch]\n  web_fetch:\n    allow_networks: [my-nas]\n"
    )

    with pytest.raises(ConfigError, match=r"agent\.yaml:8:\d+: .*'my-nas' is not a network"):
        load_agent(folder, env={"OPENAI_API_KEY": "sk-test"})
