"""`web_search` against a fake SearXNG, Brave and Tavily served on 127.0.0.1; its agent.yaml settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from duragent.agents.loader import load_agent, validate_agent_folder
from duragent.agents.spec import WebSearchSpec
from duragent.config import parse_config_text
from duragent.errors import ConfigError
from duragent.runtime.events import ToolCallFinished
from duragent.runtime.loop import Runtime, drain
from duragent.runtime.providers import ProviderPool
from duragent.sessions.log import SessionLog
from duragent.testing.fake_llm import FakeLLMServer, text, tool_calls
from duragent.testing.fake_search import API_KEY, FakeResult, FakeSearchServer
from duragent.tools.base import ToolContext
from duragent.tools.web_search import MAX_ANSWER_BYTES, WebSearchArgs, WebSearchTool

pytest_plugins = ["duragent.testing.pytest_plugin"]

RESULTS = [
    FakeResult(
        "Duragent <b>docs</b>",
        "https://duragent.example/docs",
        "Agents whose state is <strong>files</strong>.",
    ),
    FakeResult("Second", "https://second.example/", "Another &amp; more."),
    FakeResult("Third", "https://third.example/", ""),
]


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(agent="helper", session_id="s_1", workdir=tmp_path)


def settings(provider: str, url: str, **extra: object) -> WebSearchSpec:
    return WebSearchSpec.model_validate({"provider": provider, "url": url, **extra})


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAVE_API_KEY", API_KEY)
    monkeypatch.setenv("MY_TAVILY_KEY", API_KEY)


@pytest.mark.parametrize("provider", ["searxng", "brave", "tavily"])
async def test_each_provider_returns_title_url_and_snippet(
    fake_search: FakeSearchServer, ctx: ToolContext, keys: None, provider: str
) -> None:
    fake_search.results = RESULTS
    url = {"searxng": fake_search.url, "brave": fake_search.brave_url, "tavily": fake_search.tavily_url}[
        provider
    ]
    extra = {"api_key_env": "MY_TAVILY_KEY"} if provider == "tavily" else {}
    tool = WebSearchTool(settings(provider, url, **extra))

    result = await tool.run(WebSearchArgs(query="duragent files", count=2), ctx)

    assert result.ok, result.content
    assert result.content == (
        "1. Duragent docs\n   https://duragent.example/docs\n   Agents whose state is files.\n\n"
        "2. Second\n   https://second.example/\n   Another & more."
    )
    assert result.data is not None
    assert result.data["results"][1] == {
        "title": "Second",
        "url": "https://second.example/",
        "snippet": "Another & more.",
    }
    [request] = fake_search.requests
    assert (request.api, request.query) == (provider, "duragent files")
    assert tool.invocation(WebSearchArgs(query="duragent files"), ctx) == "duragent files"


async def test_requests_carry_what_each_api_expects(
    fake_search: FakeSearchServer, ctx: ToolContext, keys: None
) -> None:
    await WebSearchTool(settings("searxng", fake_search.url + "/")).run(WebSearchArgs(query="a"), ctx)
    await WebSearchTool(settings("brave", fake_search.brave_url, max_results=3)).run(
        WebSearchArgs(query="b", count=10), ctx
    )
    await WebSearchTool(settings("tavily", fake_search.tavily_url, api_key_env="MY_TAVILY_KEY")).run(
        WebSearchArgs(query="c"), ctx
    )

    searxng, brave, tavily = fake_search.requests
    assert searxng.params == {"q": "a", "format": "json"}
    assert brave.headers["X-Subscription-Token"] == API_KEY
    assert brave.count == 3  # max_results caps what a call asks for
    assert tavily.headers["Authorization"] == f"Bearer {API_KEY}"
    assert tavily.count == 5


async def test_failures_come_back_as_sentences_the_model_can_act_on(
    fake_search: FakeSearchServer, ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    brave = WebSearchTool(settings("brave", fake_search.brave_url))
    searxng = WebSearchTool(settings("searxng", fake_search.url))
    query = WebSearchArgs(query="x")

    missing_key = await brave.run(query, ctx)
    monkeypatch.setenv("BRAVE_API_KEY", "wrong-key")
    wrong_key = await brave.run(query, ctx)
    fake_search.fail_with(403)
    json_disabled = await searxng.run(query, ctx)
    fake_search.fail_with(429)
    limited = await searxng.run(query, ctx)
    fake_search.fail_with(500)
    broken = await searxng.run(query, ctx)
    fake_search.responder = lambda q: []
    nothing = await searxng.run(query, ctx)
    unreachable = await WebSearchTool(settings("searxng", "http://127.0.0.1:9")).run(query, ctx)

    assert not missing_key.ok
    assert missing_key.content == "brave needs an API key: BRAVE_API_KEY is not set for the server"
    assert wrong_key.content == "brave refused the request (HTTP 401): check the API key or access"
    assert "enable `json` under search.formats" in json_disabled.content
    assert limited.content == "searxng is rate limiting (HTTP 429): try again later"
    assert broken.content.startswith("searxng answered HTTP 500:")
    assert nothing.ok
    assert nothing.content == "no results for 'x'"
    assert not unreachable.ok
    assert unreachable.content.startswith("could not reach searxng:")
    assert "wrong-key" not in wrong_key.content


def write_agent(tmp_path: Path, tools_yaml: str) -> Path:
    folder = tmp_path / "agents" / "helper"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(
        "name: helper\nmodel:\n  provider: openai\n  name: gpt-test\n  base_url: http://127.0.0.1:1/v1\n"
        + tools_yaml
    )
    return folder


@pytest.mark.parametrize(
    ("tools_yaml", "expected"),
    [
        (
            "tools:\n  builtin: [web_search]\n  web_search:\n    provider: searxng\n",
            "agent.yaml:9:5: tools.web_search: provider searxng needs url",
        ),
        (
            "tools:\n  builtin: [web_search]\n  web_search:\n    provider: bing\n",
            "agent.yaml:9:15: tools.web_search.provider must be 'searxng', 'brave' or 'tavily', got 'bing'",
        ),
        (
            "tools:\n  builtin: [web_search]\n  web_search: {provider: brave, max_results: 50}\n",
            "agent.yaml:8:46: tools.web_search.max_results must be at most 20, got 50",
        ),
    ],
)
def test_invalid_web_search_settings_are_reported_with_file_and_line(
    tmp_path: Path, tools_yaml: str, expected: str
) -> None:
    folder = write_agent(tmp_path, tools_yaml)
    with pytest.raises(ConfigError) as caught:
        load_agent(folder, env={})
    assert expected in str(caught.value)


def test_validate_wants_web_search_settings_in_the_agent_or_in_duragent_yaml(tmp_path: Path) -> None:
    folder = write_agent(tmp_path, "tools: [bash, web_search]\n")

    alone, _ = validate_agent_folder(folder, env={})
    shared, _ = validate_agent_folder(folder, env={}, shared_web_search=True)

    [problem] = alone
    assert str(problem).endswith(
        "agent.yaml:6:15: web_search needs a search service: add tools.web_search with provider "
        "(searxng and its url, brave or tavily), or web_search in duragent.yaml; see docs/tools.md"
    )
    assert shared == []


def test_duragent_yaml_web_search_is_validated_with_its_location() -> None:
    config = parse_config_text("web_search:\n  provider: brave\n  api_key_env: MY_KEY\n", env={})
    assert config.web_search is not None
    assert (config.web_search.provider, config.web_search.api_key_env) == ("brave", "MY_KEY")
    with pytest.raises(
        ConfigError, match=r":2:13: web_search.provider must be 'searxng', 'brave' or 'tavily'"
    ):
        parse_config_text("web_search:\n  provider: google\n", env={})


def test_the_list_form_takes_the_settings_on_the_web_search_item(tmp_path: Path) -> None:
    folder = write_agent(
        tmp_path, "tools:\n  - bash\n  - {name: web_search, provider: brave, api_key_env: KEY, timeout: 5s}\n"
    )
    agent, _ = load_agent(folder, env={})
    spec = agent.spec.tools.web_search
    assert spec is not None
    assert (spec.provider, spec.api_key_env, spec.timeout) == ("brave", "KEY", timedelta(seconds=5))
    assert agent.spec.tools.builtin == ["bash", "web_search"]


async def test_a_turn_searches_through_the_agents_configured_service(
    tmp_path: Path, fake_llm: FakeLLMServer, fake_search: FakeSearchServer, session: SessionLog
) -> None:
    folder = write_agent(
        tmp_path,
        f"tools:\n  builtin: [web_search]\n  web_search: {{provider: searxng, url: '{fake_search.url}'}}\n"
        "  policy: {mode: ask, allow: ['web_search:*']}\n",
    )
    (folder / "agent.yaml").write_text(
        (folder / "agent.yaml").read_text().replace("http://127.0.0.1:1/v1", fake_llm.url)
    )
    agent, _ = load_agent(folder, env={})
    fake_llm.enqueue(tool_calls([("web_search", {"query": "durable agents"})]), text("Found it."))
    pool = ProviderPool({"OPENAI_API_KEY": "sk-test"})
    try:
        events = await drain(Runtime(provider_for=pool.for_agent).run_turn(session, agent, "search"))
    finally:
        await pool.close()

    [searched] = [e for e in events if isinstance(e, ToolCallFinished)]
    assert searched.ok
    assert searched.content.startswith("1. Example Domain\n   https://example.com/")
    assert fake_search.requests[0].query == "durable agents"


async def test_an_agent_without_settings_searches_where_duragent_yaml_says(
    tmp_path: Path, fake_llm: FakeLLMServer, fake_search: FakeSearchServer, session: SessionLog
) -> None:
    folder = write_agent(tmp_path, "tools:\n  builtin: [web_search]\n  policy: {mode: allow}\n")
    (folder / "agent.yaml").write_text(
        (folder / "agent.yaml").read_text().replace("http://127.0.0.1:1/v1", fake_llm.url)
    )
    agent, _ = load_agent(folder, env={})
    fake_llm.enqueue(
        tool_calls([("web_search", {"query": "shared"})]),
        text("ok"),
        tool_calls([("web_search", {"query": "none"})]),
        text("ok"),
    )
    pool = ProviderPool({"OPENAI_API_KEY": "sk-test"})
    shared = WebSearchSpec(provider="searxng", url=fake_search.url)
    try:
        configured = await drain(
            Runtime(provider_for=pool.for_agent, web_search=shared).run_turn(session, agent, "a")
        )
        unconfigured = await drain(Runtime(provider_for=pool.for_agent).run_turn(session, agent, "b"))
    finally:
        await pool.close()

    [searched] = [e for e in configured if isinstance(e, ToolCallFinished)]
    [refused] = [e for e in unconfigured if isinstance(e, ToolCallFinished)]
    assert searched.ok
    assert [r.query for r in fake_search.requests] == ["shared"]
    assert not refused.ok
    assert (
        refused.content
        == "web_search is not configured: neither tools.web_search nor duragent.yaml's web_search"
    )


async def test_an_answer_larger_than_a_search_needs_is_not_read_whole(
    fake_search: FakeSearchServer, ctx: ToolContext
) -> None:
    # a service (or a wrong url) answering megabytes: reading stops at MAX_ANSWER_BYTES
    fake_search.results = [FakeResult(f"Result {n}", "https://x.example/", "s" * 1000) for n in range(5000)]
    tool = WebSearchTool(settings("searxng", fake_search.url))

    result = await tool.run(WebSearchArgs(query="everything"), ctx)

    assert not result.ok
    assert result.content == f"searxng answered more than {MAX_ANSWER_BYTES} bytes; check its url"
