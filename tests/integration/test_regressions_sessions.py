"""Regressions of live sessions and session stores: cancellation, unloading, shutdown, redaction."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from duragent.agents.loader import Agent, load_agent
from duragent.config import DuragentConfig
from duragent.runtime.loop import Runtime
from duragent.runtime.providers import ProviderPool
from duragent.secrets import SecretGuard
from duragent.sessions.live import DISCONNECT_PAUSE_REASON, collect_turn
from duragent.sessions.log import SessionLog
from duragent.sessions.manager import SessionManager
from duragent.sessions.stream import Position
from duragent.stores.base import SessionEvent, SessionNotFound
from duragent.stores.filesystem.sessions import FilesystemSessionStore
from duragent.testing.fake_llm import FakeLLMServer, delay, text, tool_calls

pytest_plugins = ["duragent.testing.pytest_plugin"]

SECRET = "sk-live-abcdefghijklmnop1234"

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
  tools:
    builtin: [bash]
    policy:
      mode: ask
      allow: ["bash:echo *"]
"""

ManagerFactory = Callable[..., SessionManager]


@pytest.fixture
def agent(tmp_path: Path, fake_llm: FakeLLMServer) -> Agent:
    directory = tmp_path / "agents" / "helper"
    directory.mkdir(parents=True)
    (directory / "agent.yaml").write_text(AGENT_YAML.format(url=fake_llm.url))
    loaded, _ = load_agent(directory, env={"OPENAI_API_KEY": "sk-test"})
    return loaded


@pytest.fixture
async def make_manager(tmp_path: Path, agent: Agent) -> AsyncIterator[ManagerFactory]:
    """Managers over `<tmp>/sessions` (a new store each: a restarted server), closed at the end."""
    made: list[tuple[SessionManager, FilesystemSessionStore, ProviderPool]] = []

    def make(on_disconnect: str = "continue", **store_options: object) -> SessionManager:
        store = FilesystemSessionStore(tmp_path / "sessions", fsync="never", **store_options)  # type: ignore[arg-type]
        providers = ProviderPool({"OPENAI_API_KEY": "sk-test"})
        config = DuragentConfig.model_validate({"session": {"on_disconnect": on_disconnect}})
        manager = SessionManager(store, Runtime(provider_for=providers.for_agent), config, lambda name: agent)
        made.append((manager, store, providers))
        return manager

    yield make
    for manager, store, providers in made:
        await manager.close(grace=0)
        await store.close()
        await providers.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_cancelling_an_append_that_runs_in_a_thread_keeps_the_log_appendable(tmp_path: Path) -> None:
    # fsync "turn" with no inline budget: every append's write runs in a worker thread.
    store = FilesystemSessionStore(tmp_path / "sessions", fsync="turn", inline_fsync_max_seconds=0)
    session = await SessionLog.create(store, agent="helper")
    try:
        for attempt in range(24):
            append = asyncio.create_task(session.append("note", {"n": attempt}))
            for _ in range(1 + attempt % 8):
                await asyncio.sleep(0)
            append.cancel()
            await asyncio.gather(append, return_exceptions=True)
            assert session.state.last_seq == await store.last_seq(session.session_id)
        event = await session.append("cancelled", {"reason": "cancelled by client"})
        assert event.seq == await store.last_seq(session.session_id)
    finally:
        await store.close()


async def test_a_turn_cancelled_before_it_starts_leaves_the_session_free_for_the_next_message(
    make_manager: ManagerFactory, fake_llm: FakeLLMServer
) -> None:
    live = await make_manager().create("helper")
    await live.submit("first")
    assert await live.cancel()  # before the turn's task ever ran
    assert not live.busy
    fake_llm.enqueue(text("second answer"))
    assert await live.submit("second") == 0
    await asyncio.wait_for(live.turn_finished.wait(), 5)
    assert live.log.state.conversation[-1]["content"] == "second answer"


async def test_a_subscribe_whose_replay_fails_does_not_leave_the_session_attached(
    make_manager: ManagerFactory,
) -> None:
    manager = make_manager()
    live = await manager.create("helper")
    # The buffer is empty, so replay reads the log, which is gone.
    shutil.rmtree(manager.store.session_dir(live.session_id))  # type: ignore[attr-defined]
    with pytest.raises(SessionNotFound):
        await live.subscribe(Position(0))
    assert live.attached == 0


async def test_a_subscriber_that_attaches_once_the_session_ended_gets_the_end_and_stops(
    make_manager: ManagerFactory,
) -> None:
    """A stream that checked the session just before it ended: `end` closed only the subscribers
    it had, and this one would wait for ever."""
    live = await make_manager().create("helper")
    await live.end()

    subscription = await live.subscribe(Position(0))
    events = [event.event async for event in subscription]

    assert events[-1] == "session_end"


async def test_unloaded_sessions_give_back_their_files_and_locks(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    manager.idle_ttl = timedelta(0)
    before = open_fds()
    ids = []
    for _ in range(20):
        live = await manager.create("helper")
        await live.submit("hi")
        await asyncio.wait_for(live.turn_finished.wait(), 5)
        ids.append(live.session_id)
    assert len(await manager.unload_idle(0.0)) == 20
    # Each session held its log and its lock open (40 fds); a few sockets to the model may stay.
    assert open_fds() - before < 10
    # The lock is free: another store (another process) may write the session now.
    other = FilesystemSessionStore(manager.store.session_dir(ids[0]).parent, fsync="never")  # type: ignore[attr-defined]
    try:
        last = await other.last_seq(ids[0])
        events = await other.read(ids[0])
        await other.append(ids[0], SessionEvent(last + 1, "ev_x", events[-1].ts, "note", {}))
    finally:
        await other.close()


async def test_a_session_asked_for_while_it_unloads_is_loaded_again_once_it_is_closed(
    make_manager: ManagerFactory, fake_llm: FakeLLMServer
) -> None:
    # Loading it while the old actor was still closing let the two race over the log (and, in
    # a cluster, released the ownership the new one had just claimed).
    manager = make_manager()
    manager.idle_ttl = timedelta(0)
    live = await manager.create("helper")
    order: list[str] = []
    closing = asyncio.Event()
    close = live.close

    async def slow_close(grace: float = 10.0) -> None:
        closing.set()
        await asyncio.sleep(0.05)
        await close(grace)
        order.append("closed")

    live.close = slow_close  # type: ignore[method-assign]
    unloading = asyncio.create_task(manager.unload_idle(0.0))
    await closing.wait()
    again = await manager.get(live.session_id)
    order.append("loaded")
    assert await unloading == [live.session_id]
    assert order == ["closed", "loaded"]
    assert again is not live
    fake_llm.enqueue(text("after the reload"))
    await again.submit("hi")
    await asyncio.wait_for(again.turn_finished.wait(), 5)
    events = await manager.store.read(live.session_id)
    assert any(e.type == "assistant_message" and e.payload["content"] == "after the reload" for e in events)


async def test_a_session_asked_for_while_it_is_deleted_is_not_found(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    live = await manager.create("helper")
    deleting = asyncio.create_task(manager.delete(live.session_id))
    await asyncio.sleep(0)  # the delete has started
    with pytest.raises(SessionNotFound):
        await manager.get(live.session_id)
    await deleting


async def test_a_paused_idle_session_is_unloaded_and_still_resumes_when_a_client_attaches(
    make_manager: ManagerFactory,
) -> None:
    manager = make_manager(on_disconnect="pause")
    manager.idle_ttl = timedelta(0)
    live = await manager.create("helper")
    session_id = live.session_id
    await live.log.append(
        "status_change", {"from": "active", "to": "paused", "reason": DISCONNECT_PAUSE_REASON}
    )
    assert await manager.unload_idle(0.0) == [session_id]
    reloaded = await manager.get(session_id)
    assert reloaded.status == "paused"
    subscription = await reloaded.subscribe()
    subscription.close()
    assert reloaded.status == "active"


async def test_a_continue_session_paused_by_a_graceful_stop_resumes_on_the_next_start(
    make_manager: ManagerFactory, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(delay(0.2, tool_calls([("bash", {"command": "echo hi"})])), text("final"))
    manager = make_manager()
    live = await manager.create("helper")
    session_id = live.session_id
    await live.submit("hi")
    await asyncio.sleep(0.05)  # the turn is waiting for the model
    await manager.close(grace=5)
    assert live.status == "paused"

    restarted = make_manager()
    report = await restarted.recover()
    assert report.resumed == (session_id,)
    resumed = restarted.live[session_id]
    await asyncio.wait_for(resumed.turn_finished.wait(), 5)
    assert resumed.status == "active"
    assert resumed.log.state.conversation[-1]["content"] == "final"


async def test_a_pause_session_paused_by_a_graceful_stop_stays_paused_on_the_next_start(
    make_manager: ManagerFactory, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(delay(0.2, tool_calls([("bash", {"command": "echo hi"})])), text("final"))
    manager = make_manager(on_disconnect="pause")
    live = await manager.create("helper")
    await live.submit("hi")
    await asyncio.sleep(0.05)
    await manager.close(grace=5)

    restarted = make_manager(on_disconnect="pause")
    report = await restarted.recover()
    assert report.paused == (live.session_id,)
    assert restarted.live[live.session_id].status == "paused"
    assert not restarted.live[live.session_id].busy


async def test_state_yaml_keeps_secrets_out_of_the_conversation_approvals_and_metadata(
    tmp_path: Path,
) -> None:
    guard = SecretGuard({"OPENAI_API_KEY": SECRET})
    store = FilesystemSessionStore(tmp_path / "sessions", fsync="never", redact=guard.redact_value)
    try:
        session = await SessionLog.create(store, agent="helper", metadata={"note": f"key {SECRET}"})
        await session.append("user_message", {"content": f"my key is {SECRET}", "turn": 1})
        await session.snapshot()
        snapshot_text = store.snapshot_path(session.session_id).read_text()
        assert SECRET not in snapshot_text
        assert "my key is" in snapshot_text
        # The live state keeps what the model saw; only what reaches disk is redacted.
        assert SECRET in session.state.conversation[-1]["content"]
    finally:
        await store.close()


async def test_a_turn_cancelled_while_recording_its_approval_request_leaves_no_approval_behind(
    make_manager: ManagerFactory, fake_llm: FakeLLMServer
) -> None:
    live = await make_manager().create("helper")
    approvals = live.runtime.approvals

    def cancel_while_recording(events: list[SessionEvent]) -> None:
        # A client's cancel arrives while the session records that it waits for the approval.
        for event in events:
            if event.type == "status_change" and event.payload.get("reason") == "awaiting approval":
                live.log.listeners.remove(cancel_while_recording)
                task = asyncio.current_task()
                assert task is not None
                task.cancel()

    live.log.listeners.append(cancel_while_recording)
    fake_llm.enqueue(tool_calls([("bash", {"command": "touch a"})]))
    await live.submit("make a file")
    await asyncio.wait_for(live.turn_finished.wait(), 30)
    assert approvals.pending(live.session_id) == [], "a cancelled turn's approval request is withdrawn"

    fake_llm.enqueue(tool_calls([("bash", {"command": "touch b"})]), text("made it"))
    asked = asyncio.Event()
    live.log.listeners.append(lambda events: [asked.set() for e in events if e.type == "approval_required"])
    await live.submit("try again")  # the session asks for approvals as before
    await asyncio.wait_for(asked.wait(), 30)  # a bound for a loaded machine, not a pause
    (request,) = approvals.pending(live.session_id)
    live.decide(request.call_id, "allow_once")
    await asyncio.wait_for(live.turn_finished.wait(), 30)
    events = await live.log.store.read(live.session_id)
    errors = [event.payload for event in events if event.type == "error"]
    assert errors == [], errors
    assert live.log.state.conversation[-1]["content"] == "made it"


async def test_a_session_of_a_removed_agent_is_one_warning_line_at_start_not_a_traceback(
    tmp_path: Path, agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    from duragent.agents.catalog import AgentNotFound

    store = FilesystemSessionStore(tmp_path / "sessions", fsync="never")
    providers = ProviderPool({"OPENAI_API_KEY": "sk-test"})
    config = DuragentConfig.model_validate({})
    first = SessionManager(store, Runtime(provider_for=providers.for_agent), config, lambda name: agent)
    live = await first.create("helper")
    await first.close(grace=0)

    def removed(name: str) -> Agent:
        raise AgentNotFound(name, ["other"], tmp_path / "agents")

    restarted = SessionManager(store, Runtime(provider_for=providers.for_agent), config, removed)
    try:
        report = await restarted.recover()
    finally:
        await restarted.close(grace=0)
        await store.close()
        await providers.close()

    assert report.resumed == report.paused == ()
    (line,) = [r for r in caplog.records if live.session_id in r.getMessage()]
    assert line.levelname == "WARNING"
    assert line.exc_info is None
    assert "no agent named 'helper'" in line.getMessage()


async def test_a_client_waiting_for_the_outcome_reads_the_turn_without_its_text(
    make_manager: ManagerFactory, fake_llm: FakeLLMServer
) -> None:
    live = await make_manager().create("helper")
    outcome = await live.subscribe(outcome_only=True)
    everything = await live.subscribe()
    fake_llm.enqueue(text("the whole answer"))
    await live.submit("hi")

    seen = [event async for event in collect_turn(outcome)]
    streamed = [event.event async for event in collect_turn(everything)]

    assert [event.event for event in seen] == ["start", "done"]
    assert seen[-1].data["content"] == "the whole answer"
    assert "token" in streamed
    outcome.close()
    everything.close()
