"""Pages of the session list through the session manager: live statuses win, pages stay full."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from duragent.config import DuragentConfig
from duragent.ids import new_id
from duragent.runtime.loop import Runtime
from duragent.runtime.providers import ProviderPool
from duragent.sessions.manager import SessionManager
from duragent.stores.base import SessionEvent
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer
from tests.integration.turn_setup import agent_in

pytest_plugins = ["duragent.testing.pytest_plugin"]

AGENT_YAML = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: helper
spec:
  model:
    provider: openai
    name: gpt-test
    base_url: {url}
  system_prompt: test
"""
EARLIER = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def manager(tmp_path: Path, fake_llm: FakeLLMServer) -> AsyncIterator[SessionManager]:
    agent = agent_in(tmp_path, AGENT_YAML.format(url=fake_llm.url))
    store = FilesystemSessionStore(tmp_path / "sessions", fsync="never")
    providers = ProviderPool({"OPENAI_API_KEY": "sk-test"})
    config = DuragentConfig.model_validate({"session": {"on_disconnect": "continue"}})
    made = SessionManager(store, Runtime(provider_for=providers.for_agent), config, lambda name: agent)
    yield made
    await made.close(grace=0)
    await store.close()
    await providers.close()


async def _stored_paused(store: FilesystemSessionStore, session_id: str, at: datetime) -> None:
    start = {"agent": "helper", "on_disconnect": "pause", "metadata": {}}
    await store.append(
        session_id,
        [
            SessionEvent(1, new_id("evt"), at, "session_start", start),
            SessionEvent(2, new_id("evt"), at, "status_change", {"from": "active", "to": "paused"}),
        ],
    )


async def test_a_status_page_is_topped_up_when_a_live_session_no_longer_matches(
    manager: SessionManager,
) -> None:
    store = manager.store
    assert isinstance(store, FilesystemSessionStore)
    await _stored_paused(store, "s_older", EARLIER)
    await _stored_paused(store, "s_newer", EARLIER + timedelta(hours=1))
    live = await manager.create("helper")
    # Stored as paused, live as active: the live status is the newer one.
    seq = await store.last_seq(live.session_id) + 1
    await store.append(
        live.session_id,
        SessionEvent(
            seq, new_id("evt"), datetime.now(UTC), "status_change", {"from": "active", "to": "paused"}
        ),
    )

    first = await manager.list_sessions(status="paused", limit=1)
    both = await manager.list_sessions(status="paused", limit=5)

    assert [s.session_id for s in first] == ["s_newer"]
    assert [s.session_id for s in both] == ["s_newer", "s_older"]
