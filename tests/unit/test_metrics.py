"""Metrics: the Prometheus text a server exposes, from its own counters and its live state."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from duragent.config import load_config
from duragent.scaffold import ProviderChoice, init_workspace
from duragent.server.app import create_app
from duragent.server.metrics import Metrics
from duragent.server.state import STATE, ServerState

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, duragent_client: ClientFactory) -> Client:
    """A server on a workspace made by `duragent init` (demo agent "assistant"), lazy agent loading."""
    monkeypatch.chdir(tmp_path)
    init_workspace(tmp_path, provider=ProviderChoice("demo", "demo", "tests"))
    (tmp_path / "duragent.yaml").write_text("data_dir: .duragent\nagents:\n  lazy_load: true\n")
    return await duragent_client(create_app(load_config(tmp_path / "duragent.yaml"), env={}))


def value(text: str, series: str) -> float:
    """The value of one exposed series, e.g. `duragent_turns_total{outcome="completed"}`."""
    for line in text.splitlines():
        name, _, number = line.rpartition(" ")
        if name == series:
            return float(number)
    raise AssertionError(f"{series} not in:\n{text}")


def state_of(client: Client) -> ServerState:
    return client.server.app[STATE]


async def test_metrics_endpoint_exposes_every_documented_family(client: Client) -> None:
    response = await client.get("/metrics")

    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    assert {
        "duragent_live_sessions",
        "duragent_turns_total",
        "duragent_tokens_total",
        "duragent_turn_duration_seconds",
        "duragent_git_commits_total",
        "duragent_plugin_restarts_total",
        "duragent_agent_cache_hits_total",
        "duragent_agent_cache_misses_total",
        "duragent_agent_cache_evictions_total",
        "duragent_agents_loaded",
    } <= families
    assert value(text, 'duragent_live_sessions{state="active"}') == 0
    assert value(text, 'duragent_tokens_total{direction="input"}') == 0


async def test_turns_tokens_and_latency_change_after_a_turn_is_reported(client: Client) -> None:
    state = state_of(client)
    metrics: Metrics = state.metrics

    metrics.turn_finished(1.5, "completed")
    metrics.turn_finished(0.2, "error")
    metrics.tokens(input=120, output=30)
    text = metrics.render(state)

    assert value(text, 'duragent_turns_total{outcome="completed"}') == 1
    assert value(text, 'duragent_turns_total{outcome="error"}') == 1
    assert value(text, 'duragent_tokens_total{direction="input"}') == 120
    assert value(text, 'duragent_tokens_total{direction="output"}') == 30
    assert value(text, "duragent_turn_duration_seconds_count") == 2
    assert value(text, 'duragent_turn_duration_seconds_bucket{le="1.0"}') == 1
    assert value(text, "duragent_turn_duration_seconds_sum") == pytest.approx(1.7)


async def test_plugin_restarts_are_counted_per_plugin(client: Client) -> None:
    state = state_of(client)

    state.metrics.plugin_restart("telegram")
    state.metrics.plugin_restart("telegram")

    assert value(state.metrics.render(state), 'duragent_plugin_restarts_total{plugin="telegram"}') == 2


async def test_live_sessions_and_agent_cache_follow_the_server_state(client: Client) -> None:
    created = await client.post("/api/v1/sessions", json={"agent": "assistant"})
    assert created.status == 201
    await client.get("/api/v1/agents/assistant")

    text = await (await client.get("/metrics")).text()

    live = sum(value(text, f'duragent_live_sessions{{state="{s}"}}') for s in ("active", "running", "paused"))
    assert live == 1
    assert value(text, "duragent_agent_cache_misses_total") == 1
    assert value(text, "duragent_agent_cache_hits_total") >= 1
    assert value(text, "duragent_agents_loaded") == 1


def test_two_metrics_objects_never_share_numbers() -> None:
    first, second = Metrics(), Metrics()

    first.plugin_restart("discord")

    assert b"discord" not in _exposition(second)


def _exposition(metrics: Metrics) -> bytes:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry)


async def test_git_commits_count_the_data_repository_commits(client: Client) -> None:
    files = {"agent.yaml": "name: helper\nmodel:\n  provider: demo\n  name: demo\n"}
    deployed = await client.post("/api/admin/v1/agents", json={"name": "helper", "files": files})
    assert deployed.status == 201
    state = state_of(client)
    assert state.workspace.committer is not None
    await asyncio.to_thread(state.workspace.committer.flush, 10.0)

    assert value(state.metrics.render(state), "duragent_git_commits_total") >= 1
